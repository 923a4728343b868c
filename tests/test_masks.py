"""Masking (nbs/08_masking.ipynb): training-mask frequencies and shapes, mask-strategy parsing and conditioning, errors."""
import math
import random
from collections import Counter

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from opensora_nb.masks import (IMG_FPS, MASK_TYPES, V1_2_STAGE1_MASK_RATIOS, V1_2_STAGE2_MASK_RATIOS,
                               V1_2_STAGE3_MASK_RATIOS, MaskGenerator, MaskTuple,
                               append_generated, apply_mask_strategy, build_conditioning, draw_mask_strategy,
                               find_nearest_point, frame_mask, mask_strategy_widget, multi_resolution_info, parse_ref_lengths,
                               parse_mask_strategy, x_mask_at)


def _within(counts, ratios, n, sigmas=4.5):
    for name, p in ratios.items():
        f = counts[name] / n
        sd = math.sqrt(p * (1 - p) / n)
        assert abs(f - p) <= sigmas * sd + 1e-12, f"{name}: observed {f:.5f}, expected {p:.5f} (sd {sd:.5f})"


# ---------------------------------------------------------------- training masks

def test_official_names_and_preset():
    assert len(MASK_TYPES) == 11 and "intepolate" in MASK_TYPES and "interpolate" not in MASK_TYPES
    assert set(V1_2_STAGE1_MASK_RATIOS) == set(MASK_TYPES) - {"identity"}
    assert math.isclose(sum(V1_2_STAGE1_MASK_RATIOS.values()), 0.2)
    mg = MaskGenerator()  # default = v1.2 stage 1
    assert math.isclose(mg.mask_ratios["identity"], 0.8) and list(mg.mask_ratios)[-1] == "identity"
    assert V1_2_STAGE1_MASK_RATIOS["image_head"] == 0.05 and V1_2_STAGE1_MASK_RATIOS["random"] == 0.05


def test_stage_presets_match_reference_configs():
    # configs/opensora-v1-2/train/stage2.py (tag v1.2.0) uses stage1.py's mask_ratios; stage3.py is the "25%" one
    assert V1_2_STAGE2_MASK_RATIOS == V1_2_STAGE1_MASK_RATIOS
    assert V1_2_STAGE2_MASK_RATIOS is not V1_2_STAGE1_MASK_RATIOS  # a copy: editing one preset leaves the other
    assert math.isclose(MaskGenerator(V1_2_STAGE2_MASK_RATIOS).mask_ratios["identity"], 0.8)
    assert V1_2_STAGE3_MASK_RATIOS == {
        "random": 0.01, "intepolate": 0.002, "quarter_random": 0.002, "quarter_head": 0.002, "quarter_tail": 0.002,
        "quarter_head_tail": 0.002, "image_random": 0.0, "image_head": 0.22, "image_tail": 0.005,
        "image_head_tail": 0.005}
    assert list(V1_2_STAGE3_MASK_RATIOS) == list(V1_2_STAGE1_MASK_RATIOS)  # same order: the cumulative draw follows it
    assert math.isclose(MaskGenerator(V1_2_STAGE3_MASK_RATIOS).mask_ratios["identity"], 0.75)
    assert V1_2_STAGE3_MASK_RATIOS != V1_2_STAGE2_MASK_RATIOS


def test_img_fps_is_the_io_constant():
    from opensora_nb import io
    assert IMG_FPS is io.IMG_FPS and IMG_FPS == 120


def test_zero_ratio_never_drawn():
    mg = MaskGenerator(V1_2_STAGE3_MASK_RATIOS, seed=3)
    assert "image_random" not in {mg.pick() for _ in range(20_000)}


def test_type_frequencies_preset():
    n = 200_000
    mg = MaskGenerator(seed=123)
    _within(Counter(mg.pick() for _ in range(n)), mg.mask_ratios, n)


def test_type_frequencies_custom_and_masks_consistent():
    ratios = {"identity": 0.3, "random": 0.2, "intepolate": 0.1, "quarter_head_tail": 0.1, "image_tail": 0.15,
              "image_random": 0.15}
    n = 20_000
    masks, names = MaskGenerator(ratios, seed=7).get_masks(torch.zeros(n, 2, 9, 1, 1), return_types=True)
    assert masks.shape == (n, 9) and masks.dtype == torch.bool
    _within(Counter(names), ratios, n)
    for m, name in zip(masks[:3000], names[:3000]):
        cond = (~m).nonzero().flatten().tolist()
        if name == "identity": assert cond == []
        elif name == "image_tail": assert cond == [8]
        elif name == "image_random": assert len(cond) == 1
        elif name == "intepolate": assert cond in ([0, 2, 4, 6, 8], [1, 3, 5, 7])
        elif name == "quarter_head_tail":
            k = len(cond) // 2
            assert 1 <= k <= 2 and cond == list(range(k)) + list(range(9 - k, 9))
        elif name == "random": assert m.any()
    # frame-level consequence: with these ratios the last frame is conditioned at least image_tail + qht of the time
    assert (~masks[:, -1]).float().mean() > 0.25 - 0.02


def test_random_type_conditioned_share():
    # 'random' conditions each frame with p ~ U(0.1, 0.9): on average half the frames (minus the forced last frame)
    mg = MaskGenerator({"random": 1.0}, seed=0)
    m = mg.get_masks(torch.zeros(4000, 1, 16, 1, 1))
    share = (~m).float().mean().item()
    assert 0.45 < share < 0.52, share
    assert m.any(1).all()


def test_seed_reproducible_and_short_videos():
    x = torch.zeros(64, 1, 12, 1, 1)
    a, b = MaskGenerator(seed=5).get_masks(x), MaskGenerator(seed=5).get_masks(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, MaskGenerator(seed=6).get_masks(x))
    for name in MASK_TYPES:
        assert frame_mask(name, 1).tolist() == [True]
        for T in (2, 3):  # the reference crashes on quarter_* here (randint(1, 0)); we condition 1 frame
            m = frame_mask(name, T, random.Random(0))
            assert m.shape == (T,) and (m.any() or name != "random")


@pytest.mark.parametrize("ratios, msg", [
    ({"interpolate": 0.1}, "unknown mask type"),
    ({"mask_random": 0.1}, "unknown mask type"),
    ({"random": 0.6, "image_head": 0.5}, "sum to 1.1"),
    ({"random": -0.1}, "[0, 1]"),
    ({"random": 1.5}, "[0, 1]"),
    ({"random": "0.1"}, "[0, 1]"),
    ({"identity": 0.5, "random": 0.2}, "must sum to 1"),
])
def test_generator_errors(ratios, msg):
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        MaskGenerator(ratios)


def test_frame_mask_unknown():
    with pytest.raises(ValueError, match="intepolate"):
        frame_mask("interpolate", 8)


# ---------------------------------------------------------------- strategies

def test_parse_forms():
    assert parse_mask_strategy("0") == [MaskTuple(0, 0, 0, 0, 1, 0.0)]
    assert parse_mask_strategy(" 0 , 1 ,0,-1, 1 ") == [MaskTuple(0, 1, 0, -1, 1, 0.0)]
    assert parse_mask_strategy("0,0,-8,0,8") == [MaskTuple(0, 0, -8, 0, 8, 0.0)]          # older 5-field form
    assert parse_mask_strategy("0;1,1,0,0,2,0.5")[1] == MaskTuple(1, 1, 0, 0, 2, 0.5)
    assert parse_mask_strategy("") == [] and parse_mask_strategy(None) == []


@pytest.mark.parametrize("bad, quoted", [
    ("0,0,a,0,1", "'0,0,a,0,1'"), ("0;;0", "''"), ("0,0,0,0,1,0,0", "'0,0,0,0,1,0,0'"), ("0,0,0,0,1.5", "'0,0,0,0,1.5'"),
    ("0,0,0,0,0", "length 0"), ("0,0,0,0,1,-0.1", "edit ratio -0.1"), ("0,0,0,0,1,2", "edit ratio 2"),
    ("-1", "negative"), ("0,-2", "negative"), ("0,", "'0,'"),
])
def test_parse_errors_quote(bad, quoted):
    with pytest.raises(ValueError) as e:
        parse_mask_strategy(bad)
    assert quoted in str(e.value)
    with pytest.raises(TypeError):
        parse_mask_strategy(3)


def _lat(T, tag=0.0, C=2):
    return (torch.arange(T).float() + tag)[None, :, None, None].expand(C, T, 3, 3).clone()


def test_apply_modes():
    z = torch.randn(4, 2, 10, 3, 3)
    refs = [[_lat(1, 100)], [_lat(1, 100), _lat(1, 200)], [_lat(12, 300)], [_lat(12, 300)]]
    zc, m = apply_mask_strategy(z, refs, ["0", "0;0,1,0,-1,1", "0,0,-4,0,4", "0,0,0,0,10,0.3"])
    assert zc[0, 0, 0, 0, 0] == 100 and torch.equal(zc[0, :, 1:], z[0, :, 1:])
    assert zc[1, 0, 0, 0, 0] == 100 and zc[1, 0, 9, 0, 0] == 200 and m[1].tolist() == [0] + [1] * 8 + [0]
    assert zc[2, 0, :4, 0, 0].tolist() == [308, 309, 310, 311] and m[2, :4].eq(0).all() and m[2, 4:].eq(1).all()
    assert zc[3, 0, :, 0, 0].tolist() == [300 + i for i in range(10)] and torch.allclose(m[3], torch.full((10,), 0.3))
    assert torch.equal(z, z.clone())  # input not modified in place
    assert x_mask_at(m, 400)[3].eq(False).all() and x_mask_at(m, 299)[3].all()
    assert x_mask_at(m, torch.tensor([999.0, 999.0, 999.0, 999.0]))[0].tolist() == [False] + [True] * 9
    # loop filter and no strategies
    assert apply_mask_strategy(z, refs, ["1", "1", "1", "1"])[1].eq(1).all()
    assert apply_mask_strategy(z, None, ["", None, "", ""])[1] is None


def test_apply_errors_and_clipping():
    z = torch.zeros(2, 2, 6, 3, 3)
    refs = [[_lat(4)], []]
    cases = [
        (["0,1", ""], "names reference 1 but sample 0 has 1 reference"),
        (["", "0"], "sample 1 has 0 reference"),
        (["0,0,0,3,4", ""], "'0,0,0,3,4'"),
        (["0,0,2,0,3", ""], "length 3 runs past the end"),
        (["0,0,4,0,1", ""], "reference start 4 is outside"),
        (["0,0,-5,0,1", ""], "reference start -5 is outside"),
        (["0,0,0,6,1", ""], "target start 6 is outside"),
        (["0,0,0,-7,1", ""], "target start -7"),
    ]
    for strategies, msg in cases:
        with pytest.raises(ValueError) as e:
            apply_mask_strategy(z, refs, strategies)
        assert msg in str(e.value), (msg, str(e.value))
    with pytest.raises(ValueError, match="2 mask strategies for a batch of 3"):
        apply_mask_strategy(torch.zeros(3, 2, 6, 3, 3), refs, ["", ""])
    with pytest.raises(ValueError, match="does not fit"):
        apply_mask_strategy(z, [[torch.zeros(3, 4, 3, 3)], []], ["0", ""])
    _, m = apply_mask_strategy(z, refs, ["0,0,0,3,4", ""], strict=False)  # the reference clips silently
    assert m[0].tolist() == [1, 1, 1, 0, 0, 0]


def test_align():
    assert [find_nearest_point(v, 5, 15) for v in (0, 2, 3, 7, 8, 12, 13, 14)] == [0, 0, 5, 5, 10, 10, 10, 10]
    z = torch.zeros(1, 2, 15, 3, 3)
    _, m = apply_mask_strategy(z, [[_lat(15)]], ["0,0,0,3,2"], align=5)
    assert (m[0] == 0).nonzero().flatten().tolist() == [5, 6]


class StubVAE:
    out_channels = 3

    def get_latent_size(self, s):
        return (math.ceil(s[0] / 2), s[1] // 4, s[2] // 4)

    def encode(self, x):
        x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, x.shape[2] % 2), mode="replicate")
        return torch.nn.functional.avg_pool3d(x, (2, 4, 4))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from opensora_nb.io import write_video
    d = tmp_path_factory.mktemp("refs")
    img = torch.zeros(1, 3, 20, 30, dtype=torch.uint8)
    img[:, 0] = 255  # red
    vid = torch.zeros(9, 3, 20, 30, dtype=torch.uint8)
    vid[:, 2] = 200  # blue
    return write_video(d / "red.png", img), write_video(d / "blue.mp4", vid, fps=8), d


def test_build_conditioning_files(media):
    png, mp4, d = media
    vae = StubVAE()
    out = build_conditioning(["0", "0,0,-2,0,2", "", "0;0,1,0,-1,1,0.5"], [str(png), str(mp4), None, f"{png};{mp4}"],
                             vae, num_frames=8, image_size=(16, 16), generator=torch.Generator().manual_seed(0))
    z, m, refs = out["z"], out["mask"], out["refs"]
    assert z.shape == (4, 3, 4, 4, 4) and m.shape == (4, 4)
    assert [len(r) for r in refs] == [1, 1, 0, 2] and refs[1][0].shape == (3, 5, 4, 4)
    assert z[0, 0, 0].mean() > 0.9 and z[0, 2, 0].mean() < -0.9       # red image in [-1, 1]
    assert torch.allclose(z[1, :, :2], refs[1][0][:, -2:])
    assert m[3].tolist() == [0, 1, 1, 0.5]
    assert m[2].eq(1).all()
    with pytest.raises(ValueError, match="no such file"):
        build_conditioning(["0"], [str(d / "missing.png")], vae, 8, (16, 16))
    with pytest.raises(ValueError, match="names reference 1"):
        build_conditioning(["0,1"], [str(png)], vae, 8, (16, 16))
    with pytest.raises(ValueError, match="1 reference entries for 2"):
        build_conditioning(["0", "0"], [str(png)], vae, 8, (16, 16))
    # a pixel tensor works as a reference too
    out2 = build_conditioning(["0"], [[torch.full((1, 3, 20, 30), 255, dtype=torch.uint8)]], vae, 8, (16, 16))
    assert torch.allclose(out2["z"][0, :, 0], torch.ones(3, 4, 4))


def test_append_generated_loop():
    vae = StubVAE()
    refs, strategies = append_generated(vae, torch.randn(2, 3, 8, 16, 16), [[], [torch.zeros(3, 1, 4, 4)]],
                                        ["", "0"], loop_i=1, condition_frame_length=2, condition_frame_edit=0.1)
    assert strategies == ["1,0,-2,0,2,0.1", "0;1,1,-2,0,2,0.1"]
    assert [len(r) for r in refs] == [1, 2]
    z, m = apply_mask_strategy(torch.zeros(2, 3, 4, 4, 4), refs, strategies, loop_i=1)
    assert torch.allclose(z[0, :, :2], refs[0][0][:, -2:]) and m[1].tolist() == pytest.approx([0.1, 0.1, 1, 1])


def test_multi_resolution_info():
    info = multi_resolution_info(3, (240, 426), 51, 24)
    assert set(info) == {"height", "width", "num_frames", "ar", "fps"}
    assert info["fps"].tolist() == [24] * 3 and info["width"].tolist() == [426] * 3
    assert multi_resolution_info(1, (256, 256), 1, 24)["fps"].item() == IMG_FPS == 120


def test_picture_and_widget():
    ax = draw_mask_strategy("0;0,1,0,-1,1,0.5", 8, (1, 1), t=300)
    assert len(ax.patches) == 16
    with pytest.raises(ValueError, match="'0,0,0,5,9'"):
        draw_mask_strategy("0,0,0,5,9", 8, (20,))
    w = mask_strategy_widget("0,0,0,5,9", 8, "20")  # an error is shown in the widget, not raised
    assert "runs past the end" in w.message.value and w.picture_png is None
    w.fields["strategy"].value = "0,0,0,5,3"
    assert w.message.value == "" and w.error is None and w.picture_png[:4] == b"\x89PNG"



def test_picture_labels_are_readable():
    "Issue 27: the picture's labels, ticks and title are at least 10 pt (they were 7-8 pt)."
    import matplotlib.pyplot as plt
    ax = draw_mask_strategy("0;0,1,0,-1,1,0.5", 15, (1, 1), t=300)
    texts = [*ax.texts, ax.title, *ax.get_xticklabels(), *ax.get_yticklabels()]
    assert len(ax.texts) == 2 and all(t.get_fontsize() >= 10 for t in texts), [t.get_fontsize() for t in texts]
    plt.close(ax.figure)

@pytest.mark.parametrize("field,value,says", [
    ("ref lengths", "x", "ref lengths 'x': 'x' is not a whole number"),
    ("ref lengths", "1,,2", "ref lengths '1,,2': an empty entry"),
    ("ref lengths", "0", "ref lengths '0': '0' is not a whole number >= 1"),
    ("ref lengths", "1.5", "'1.5' is not a whole number"),
    ("strategy", "0,x", "mask strategy '0,x': tuple '0,x' has a non-number"),
    ("strategy", "0,3", "names reference 3"),
    ("latent T", 2, "runs past the end"),
])
def test_widget_errors_name_the_field_and_clear_the_picture(field, value, says):
    w = mask_strategy_widget("0,0,0,0,3", 8, "5")
    assert w.error is None and w.picture_png is not None
    w.fields[field].value = value
    assert w.picture_png is None, "a bad input must not leave the last good picture (and its old title) on show"
    assert says in w.error and "invalid literal" not in w.error
    assert "cannot draw this input" in w.message.value


def test_parse_ref_lengths():
    assert parse_ref_lengths("1, 15") == [1, 15] and parse_ref_lengths("") == [] and parse_ref_lengths(" 3 ") == [3]
    with pytest.raises(ValueError, match="ref lengths '-1'"):
        parse_ref_lengths("-1")
