"""Video I/O: bad inputs give one clear error, write -> read round trips, Open-Sora's sampling and resize-crop facts."""
import numpy as np
import pytest
import torch

from opensora_nb import io
from opensora_nb.io import (VideoReadError, denormalize, normalize, read_image, read_video, resize_crop,
                            temporal_indices, video_info, write_video)


def clip(t=10, h=32, w=48, seed=0):
    "A smooth moving gradient (compresses well, so H.264 errors stay small)."
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    frames = [torch.stack([(xx + k / t) % 1 * 200 + 20, yy * 200 + 20, 0 * xx + 90 + seed]) for k in range(t)]
    return torch.stack(frames).round().to(torch.uint8)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("v") / "clip.mp4", clip(), fps=10)


# ---------------------------------------------------------------- bad inputs
def bad_files(d, good):
    (d / "empty.mp4").write_bytes(b"")
    (d / "truncated.mp4").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    (d / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "notes.txt").write_text("not a video at all\n")
    (d / "fake.png").write_text("not an image\n")
    (d / "folder.mp4").mkdir()
    return {"missing.mp4": "no such file", "empty.mp4": "empty", "truncated.mp4": "not a video or corrupt",
            "garbage.mp4": "not a video or corrupt", "notes.txt": "not a video or corrupt",
            "fake.png": "not a readable image", "folder.mp4": "directory"}


@pytest.mark.parametrize("backend", ["auto", "decord", "av"])
def test_bad_inputs_raise_one_clear_error(tmp_path, mp4, backend):
    if backend != "auto" and backend not in io.BACKENDS: pytest.skip(f"{backend} not installed")
    for name, reason in bad_files(tmp_path, mp4).items():
        for fn in (read_video, video_info):
            with pytest.raises(VideoReadError) as e:
                fn(tmp_path / name, backend=backend)
            assert str(tmp_path / name) in str(e.value), (name, str(e.value))  # names the file
            assert reason in e.value.reason, (name, e.value.reason)  # and says why
            assert e.value.path == str(tmp_path / name)


def test_error_is_a_valueerror_and_read_image_too(tmp_path):
    assert issubclass(VideoReadError, ValueError)
    with pytest.raises(VideoReadError, match="no such file"):
        read_image(tmp_path / "nope.jpg")


def test_too_few_frames_is_a_read_error(mp4):
    with pytest.raises(VideoReadError, match="fewer than num_frames"):
        read_video(mp4, num_frames=11)


def test_unknown_backend(mp4):
    with pytest.raises(ValueError, match="unknown video backend"):
        read_video(mp4, backend="opencv")


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix,tol", [(".mp4", 5.0), (".gif", 6.0)])
def test_write_read_round_trip(tmp_path, suffix, tol):
    v = clip()
    p = write_video(tmp_path / f"x{suffix}", v, fps=10)
    back = read_video(p)
    assert back.dtype == torch.uint8 and back.shape == v.shape
    assert (back.float() - v.float()).abs().mean() < tol
    info = video_info(p)
    assert (info.num_frames, info.height, info.width) == (10, 32, 48)
    assert info.fps == pytest.approx(10, rel=0.05)  # GIF stores centiseconds
    assert info.aspect_ratio == pytest.approx(32 / 48) and info.resolution == 32 * 48
    assert not list(tmp_path.glob(".x-*")), "temporary file left behind"


def test_backends_agree(tmp_path):
    if "decord" not in io.BACKENDS: pytest.skip("decord not installed")
    mp4 = write_video(tmp_path / "c.mp4", clip(w=64), fps=10)
    a, b = read_video(mp4, backend="decord"), read_video(mp4, backend="av")
    assert torch.equal(a, b)
    kw = dict(num_frames=4, frame_interval=2, rng=5)
    assert torch.equal(read_video(mp4, backend="decord", **kw), read_video(mp4, backend="av", **kw))
    assert video_info(mp4, backend="decord").num_frames == video_info(mp4, backend="av").num_frames == 10


def test_auto_falls_back_to_pyav(tmp_path):
    "decord 0.6.0 cannot copy out frames 48 pixels wide (DECORDArrayCopyFromTo size mismatch): auto must use PyAV."
    p = write_video(tmp_path / "w48.mp4", clip(w=48))
    v = read_video(p)
    assert v.shape == (10, 3, 32, 48)
    if "decord" in io.BACKENDS:
        try:
            read_video(p, backend="decord")
        except VideoReadError as e:  # the bug, reported as a read error that names the backend
            assert "decord" in e.reason


def test_mp4_bytes_are_reproducible(tmp_path):
    v = clip(8, 30, 426 // 3 * 2)  # an awkward width: swscale would not be reproducible here
    a = write_video(tmp_path / "a.mp4", v).read_bytes()
    for k in range(3):
        assert write_video(tmp_path / f"b{k}.mp4", v).read_bytes() == a


def test_odd_sizes_are_padded(tmp_path):
    p = write_video(tmp_path / "odd.mp4", clip(4, 31, 47))
    assert read_video(p).shape == (4, 3, 32, 48)


def test_write_rejects_float_and_bad_suffix(tmp_path):
    with pytest.raises(TypeError, match="denormalize"):
        write_video(tmp_path / "f.mp4", clip().float())
    with pytest.raises(ValueError, match="suffix"):
        write_video(tmp_path / "f.avi", clip())


def test_image_is_a_one_frame_video(tmp_path):
    v = clip(1)
    p = write_video(tmp_path / "frame.png", v)
    for img in (read_image(p), read_video(p)):
        assert img.shape == (1, 3, 32, 48) and torch.equal(img, v)  # PNG is lossless
    info = video_info(p)
    assert info.num_frames == 1 and info.fps != info.fps  # NaN fps, as Open-Sora's get_image_info


def test_grayscale_written_as_rgb(tmp_path):
    v = clip()[:, :1]
    back = read_video(write_video(tmp_path / "g.mp4", v))
    assert back.shape[1] == 3


# ---------------------------------------------------------------- Open-Sora facts
def reference_indices(total, num_frames, frame_interval, begin):
    "TemporalRandomCrop(num_frames * frame_interval) + np.linspace(..., dtype=int), with the start given."
    size = num_frames * frame_interval
    end = min(begin + size, total)
    return np.linspace(begin, end - 1, num_frames, dtype=int)


@pytest.mark.parametrize("total,n,k", [(100, 16, 3), (48, 16, 3), (16, 16, 1), (30, 8, 4), (200, 51, 2)])
def test_temporal_indices_match_open_sora(total, n, k):
    assert np.array_equal(temporal_indices(total, n, k, random_start=False), reference_indices(total, n, k, 0))
    last = max(0, total - n * k - 1)
    seen = set()
    for s in range(300):
        idx = temporal_indices(total, n, k, rng=s)
        seen.add(int(idx[0]))
        assert np.array_equal(idx, reference_indices(total, n, k, int(idx[0])))
    assert seen <= set(range(last + 1)) and (last == 0 or len(seen) > 1)


def test_resize_crop_keeps_aspect_and_centre():
    v = torch.zeros(2, 3, 40, 100, dtype=torch.uint8)
    v[..., :, 45:55] = 255  # a vertical bar in the middle
    out = resize_crop(v, (40, 40))
    assert out.shape == (2, 3, 40, 40)
    assert out[0, 0, 20, 20] == 255 and out[0, 0, 20, 0] == 0  # centre kept, no squeeze
    # scale factors as in resize_crop_to_fill: rh = 80/40 > rw = 120/100 -> (80, 200), crop columns from 40
    tall = resize_crop(torch.arange(40 * 100, dtype=torch.float32).reshape(1, 1, 40, 100), (80, 120))
    full = torch.nn.functional.interpolate(torch.arange(40 * 100, dtype=torch.float32).reshape(1, 1, 40, 100),
                                           size=(80, 200), mode="bilinear", align_corners=False)
    assert torch.equal(tall, full[..., :, 40:160])


def test_normalize_round_trip_and_range():
    v = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    x = normalize(v)
    assert x.shape == (3, 5, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x, (v.float() / 255 - 0.5).div(0.5).permute(1, 0, 2, 3))  # Normalize(mean=.5, std=.5)
    assert torch.equal(denormalize(x), v)
    assert torch.equal(denormalize(normalize(v[None])), v[None])


# ---------------------------------------------------------------- showing videos
def test_show_video_is_a_gif_that_needs_no_trust(tmp_path, mp4):
    "An image/gif output (no HTML: JupyterLab strips <video> data from untrusted HTML), crisp, small, from tensor or file."
    import base64
    for src in (clip(), mp4):
        bundle = io.show_video(src)._repr_mimebundle_()
        assert sorted(bundle) == ["image/gif", "text/plain"]
        data = base64.b64decode(bundle["image/gif"])
        assert data[:6] == b"GIF89a" and len(data) <= 200 * 1024
    g = io.show_video(clip(t=10, h=32, w=48), fps=10)
    back = read_video(g.save(tmp_path / "g.gif"))
    assert back.shape == (10, 3, 32 * 5, 48 * 5)  # 48 px -> x5 (about 256), nearest neighbour: blocks stay flat
    assert (back[:, :, :5, :5].float() - back[:, :, :1, :1].float()).abs().max() <= 8
    noise = torch.randint(0, 256, (300, 3, 96, 96), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert len(io.show_video(noise, max_kb=80).data) <= 80 * 1024  # fewer frames, then smaller, until it fits
    assert "<video" in io.show_video(clip(), player=True).data  # the HTML5 player on request
