"""Buckets, the variable-size batch sampler and the dataset: validator errors, resume, sharding, determinism, bad rows."""
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from opensora_nb.buckets import (ASPECT_RATIOS, BUCKET_PRESETS, Bucket, BucketConfigError, V1_2_STAGE1, V1_2_STAGE3,
                                 get_closest_ratio, make_aspect_ratios, synthetic_meta, validate_bucket_config)
from opensora_nb.data import (VariableVideoBatchSampler, VideoTextDataset, collate_skip_none, make_toy_dataset,
                              parse_index, prepare_dataloader, read_meta)


# ---------------------------------------------------------------- validator
@pytest.mark.parametrize("cfg, msg", [
    ({"300p": {1: (1.0, 8)}}, "unknown resolution '300p'"),
    ({"144p": {1: (1.5, 8)}}, "keep_prob must be a number in [0, 1]"),
    ({"144p": {1: (-0.1, 8)}}, "keep_prob must be a number in [0, 1]"),
    ({"144p": {1: ("0.5", 8)}}, "keep_prob must be a number"),
    ({"144p": {51: ((0.5, 1.2), 4)}}, "(keep_prob, frame_keep_prob), both in [0, 1]"),
    ({"144p": {51: ((0.5,), 4)}}, "(keep_prob, frame_keep_prob)"),
    ({"144p": {51: (0.5, 0)}}, "batch_size must be a positive integer, got 0"),
    ({"144p": {51: (0.5, -2)}}, "batch_size must be a positive integer"),
    ({"144p": {51: (0.5, 2.5)}}, "batch_size must be a positive integer, got 2.5"),
    ({"144p": {51: (0.5, None)}}, "only allowed for an unused bucket"),
    ({"144p": {0: (0.5, 2)}}, "num_frames must be >= 1"),
    ({"144p": {"abc": (0.5, 2)}}, "num_frames must be a positive integer, got 'abc'"),
    ({"144p": {51: (0.5, 2), "51": (0.5, 2)}}, "appears twice"),
    ({"144p": {51: 0.5}}, "expected (keep_prob, batch_size)"),
    ({"144p": {51: (0.5, 2, 3)}}, "expected (keep_prob, batch_size)"),
    ({"144p": {}}, "non-empty dict"),
    ({"144p": [1, 2]}, "non-empty dict"),
    ({}, "non-empty dict"),
    (None, "non-empty dict"),
])
def test_validator_errors(cfg, msg):
    with pytest.raises(BucketConfigError) as e:
        validate_bucket_config(cfg)
    assert msg in str(e.value)
    with pytest.raises(BucketConfigError):
        Bucket(cfg)


def test_validator_names_the_entry():
    with pytest.raises(BucketConfigError, match=r"bucket_config\['240p'\]\[102\]"):
        validate_bucket_config({"144p": {1: (1.0, 4)}, "240p": {51: (0.5, 2), 102: (0.5, 0)}})


def test_validator_accepts_official_forms():
    for name, cfg in BUCKET_PRESETS.items():
        norm = validate_bucket_config(cfg)
        assert set(norm) == set(cfg), name
    n = validate_bucket_config({"144p": {"1": [1.0, 4], "51": [[0.5, 0.3], 2], 102: (0.0, None)}})
    assert n["144p"] == {1: (1.0, None, 4), 51: (0.5, 0.3, 2), 102: (0.0, None, None)}


# ---------------------------------------------------------------- bucket
def test_bucket_order_and_ids():
    b = Bucket(V1_2_STAGE1)
    pixels = [ASPECT_RATIOS[r][0] for r in b.hw_criteria]
    assert pixels == sorted(pixels, reverse=True)
    ids = [i for r in b.bucket_id.values() for i in r.values()]
    assert ids == list(range(len(ids)))
    for r in b.bucket_id:
        assert list(b.bucket_id[r]) == sorted(b.bucket_id[r], reverse=True)
    assert len(b) == sum(len(ASPECT_RATIOS[r][1]) * len(V1_2_STAGE1[r]) for r in V1_2_STAGE1)


def test_bucket_deterministic_and_seed_dependent():
    b = Bucket(V1_2_STAGE1)
    a = [b.get_bucket_id(300, 1080, 1920, 1, s) for s in range(200)]
    assert a == [b.get_bucket_id(300, 1080, 1920, 1, s) for s in range(200)]
    assert len(set(a)) > 1


def test_bucket_thw_matches_table_and_too_small_is_none():
    b = Bucket(V1_2_STAGE3)
    bid = b.get_bucket_id(1, 1080, 1920, 1, 0)
    t, h, w = b.get_thw(bid)
    assert t == 1 and (h, w) == tuple(ASPECT_RATIOS[bid[0]][1][bid[2]])
    assert bid[2] == get_closest_ratio(1080, 1920, ASPECT_RATIOS[bid[0]][1])
    assert b.get_bucket_id(100, 50, 50, 1, 0) is None  # below 80% of 144p
    assert b.get_bucket_id(30, 1080, 1920, 1, 0) is None  # too short for 51 frames, no image bucket for videos


def test_keep_probability_frequencies():
    "An image of 240p size under stage 1: 240p (budget 102240) keeps 0.3, then 256 (65536) 0.4, then 144p 1.0."
    b = Bucket(V1_2_STAGE1)
    n = 4000
    c = Counter(b.get_bucket_id(1, 240, 426, 1, s)[0] for s in range(n))
    assert set(c) == {"240p", "256", "144p"}
    for res, p in [("240p", 0.3), ("256", 0.7 * 0.4), ("144p", 0.7 * 0.6)]:
        assert abs(c[res] / n - p) < 0.03, (res, c[res] / n, p)


def test_frame_keep_prob_thins_long_buckets():
    "A 500-frame 144p clip under stage 1: 408 is only tried with prob 0.1, 204 with 0.1, 102 with 0.33."
    b = Bucket({"144p": V1_2_STAGE1["144p"]})
    c = Counter(b.get_bucket_id(500, 144, 256, 1, s)[1] for s in range(4000))
    assert abs(c[408] / 4000 - 0.1) < 0.03
    assert abs(c[204] / 4000 - 0.9 * 0.1) < 0.03
    assert abs(c[102] / 4000 - 0.81 * 0.33) < 0.04


def test_frame_interval_moves_to_shorter_bucket():
    b = Bucket({"144p": {1: (1.0, 4), 51: (1.0, 2), 102: (1.0, 1)}})
    assert b.get_bucket_id(120, 144, 256, 1, 0)[1] == 102
    assert b.get_bucket_id(120, 144, 256, 2, 0)[1] == 51
    assert b.get_bucket_id(120, 144, 256, 3, 0) is None


def test_custom_resolutions():
    ar = {"32px": (1024, make_aspect_ratios(1024, multiple=8))}
    b = Bucket({"32px": {1: (1.0, 8), 8: (1.0, 4)}}, aspect_ratios=ar)
    assert b.get_thw(b.get_bucket_id(1, 32, 32, 1, 0)) == (1, 32, 32)
    with pytest.raises(BucketConfigError, match="unknown resolution '144p'"):
        Bucket({"144p": {1: (1.0, 8)}}, aspect_ratios=ar)


# ---------------------------------------------------------------- sampler
class MetaOnly:
    "A dataset stand-in: only the meta table (the sampler never reads files)."
    frame_interval = 1

    def __init__(self, n=600, seed=0):
        self.data = synthetic_meta(n, seed)

    def __len__(self):
        return len(self.data)


CFG = {  # small batch sizes so a few hundred rows give many batches
    "720p": {1: (0.3, 3), 51: (0.3, 2)},
    "360p": {1: (0.5, 4), 51: ((0.5, 0.5), 3), 102: (0.5, 2)},
    "144p": {1: (1.0, 8), 51: (1.0, 5), 102: ((1.0, 0.5), 3), 204: (1.0, 2)},
}


def batches(ds, **kw):
    return list(VariableVideoBatchSampler(ds, CFG, **kw))


def rows_of(bs):
    return [int(s.split("-")[0]) for b in bs for s in b]


def test_sampler_batches_are_one_bucket_with_its_batch_size():
    ds = MetaOnly()
    s = VariableVideoBatchSampler(ds, CFG, seed=5, drop_last=True)
    plan = s.epoch_plan()
    assert plan
    for bid, rows in plan:
        assert len(rows) == s.bucket.get_batch_size(bid)
    for b in s:
        thw = {x.split("-", 1)[1] for x in b}
        assert len(thw) == 1


def test_sampler_keeps_short_batches_without_drop_last_and_never_repeats():
    ds = MetaOnly()
    s = VariableVideoBatchSampler(ds, CFG, seed=5, drop_last=False)
    r = rows_of(list(s))
    assert len(r) == len(set(r))
    grouped = s.group_by_bucket()
    assert len(r) == sum(len(v) for v in grouped.values())  # num_replicas 1: every assigned row once
    assert s.num_unassigned == len(ds) - len(r)


def test_sampler_deterministic_and_epoch_reshuffles():
    ds = MetaOnly()
    a, b = batches(ds, seed=7), batches(ds, seed=7)
    assert a == b
    assert batches(ds, seed=8) != a
    s = VariableVideoBatchSampler(ds, CFG, seed=7)
    s.set_epoch(1)
    assert list(s) != a


def test_sampler_iterating_twice_gives_the_same_epoch():
    s = VariableVideoBatchSampler(MetaOnly(), CFG, seed=1)
    assert list(s) == list(s)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_disjoint_equal_length_and_cover_plan(world):
    ds = MetaOnly()
    per_rank = [batches(ds, seed=11, num_replicas=world, rank=r) for r in range(world)]
    assert len({len(p) for p in per_rank}) == 1
    sets = [set(rows_of(p)) for p in per_rank]
    for i in range(world):
        for j in range(i + 1, world):
            assert not sets[i] & sets[j], f"ranks {i} and {j} share samples"
    plan = VariableVideoBatchSampler(ds, CFG, seed=11, num_replicas=world).epoch_plan()
    assert sum(len(p) for p in per_rank) == len(plan)
    assert sorted(set().union(*sets)) == sorted(i for _, rows in plan for i in rows)


@pytest.mark.parametrize("world, stop", [(1, 1), (1, 7), (2, 3), (3, 2)])
def test_resume_mid_epoch(world, stop):
    ds = MetaOnly()
    for rank in range(world):
        full = batches(ds, seed=3, num_replicas=world, rank=rank)
        s = VariableVideoBatchSampler(ds, CFG, seed=3, num_replicas=world, rank=rank)
        s.set_epoch(0)
        it = iter(s)
        head = [next(it) for _ in range(stop)]
        state = s.state_dict(num_steps=stop)
        fresh = VariableVideoBatchSampler(ds, CFG, seed=999, num_replicas=world, rank=rank)
        fresh.load_state_dict(state)
        assert len(fresh) == len(full) - stop
        rest = list(fresh)
        assert head + rest == full
        assert len(fresh) == len(full)  # position back to 0 after a full pass


def test_resume_state_defaults_to_yielded_count_and_other_epoch():
    ds = MetaOnly()
    s = VariableVideoBatchSampler(ds, CFG, seed=2)
    s.set_epoch(4)
    ref = VariableVideoBatchSampler(ds, CFG, seed=2)
    ref.set_epoch(4)
    full = list(ref)
    it = iter(s)
    head = [next(it) for _ in range(5)]
    state = s.state_dict()
    assert state == {"seed": 2, "epoch": 4, "last_micro_batch_access_index": 5}
    s2 = VariableVideoBatchSampler(ds, CFG)
    s2.load_state_dict(state)
    assert head + list(s2) == full


def test_resume_with_fewer_ranks_continues_the_epoch():
    "4 ranks stop after 2 steps (8 batches); 2 ranks resume at batch 8 of the same plan, nothing consumed twice."
    ds = MetaOnly()
    before = set()
    for r in range(4):
        s = VariableVideoBatchSampler(ds, CFG, seed=4, num_replicas=4, rank=r)
        it = iter(s)
        before |= set(rows_of([next(it), next(it)]))
        state = s.state_dict(num_steps=2)
    after = set()
    for r in range(2):
        s = VariableVideoBatchSampler(ds, CFG, seed=4, num_replicas=2, rank=r)
        s.load_state_dict(state)
        after |= set(rows_of(list(s)))
    assert not before & after


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="rank"):
        VariableVideoBatchSampler(MetaOnly(10), CFG, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        VariableVideoBatchSampler(MetaOnly(10), CFG, num_replicas=0)


def test_sampler_skips_rows_with_bad_metadata():
    ds = MetaOnly(50)
    ds.data = ds.data.astype({"num_frames": object, "height": object, "width": object})
    ds.data.loc[3, "num_frames"] = np.nan
    ds.data.loc[4, "height"] = "oops"
    ds.data.loc[5, "width"] = 0
    s = VariableVideoBatchSampler(ds, CFG, seed=0)
    r = set(rows_of(list(s)))
    assert not r & {3, 4, 5}
    assert s.num_unassigned >= 3


# ---------------------------------------------------------------- dataset
TOY_AR = {"32px": (1024, make_aspect_ratios(1024, multiple=8)), "48px": (2304, make_aspect_ratios(2304, multiple=8))}
TOY_CFG = {"48px": {1: (1.0, 2), 8: (0.5, 2)}, "32px": {1: (1.0, 4), 4: (1.0, 3), 8: (1.0, 2)}}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n_videos=4, n_images=2)


def test_read_meta_resolves_relative_paths(toy, tmp_path):
    m = read_meta(toy)
    assert all(Path(p).is_absolute() for p in m.path)
    assert Path(m.path[0]).parent.parent == toy.parent
    df = pd.read_csv(toy)
    df.loc[0, "path"] = str(toy.parent / df.loc[0, "path"])  # an absolute path stays as it is
    df.to_csv(tmp_path / "meta.csv", index=False)
    m2 = read_meta(tmp_path / "meta.csv")
    assert m2.path[0] == df.loc[0, "path"] and Path(m2.path[1]).parent.parent == tmp_path
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_meta(tmp_path / "nope.csv")


def test_dataset_item_shapes_range_and_fields(toy):
    ds = VideoTextDataset(toy, frame_interval=2, seed=0)
    s = ds["0-8-32-40"]
    assert s["video"].shape == (3, 8, 32, 40) and s["video"].dtype == torch.float32
    assert s["video"].min() >= -1 and s["video"].max() <= 1
    assert (s["num_frames"], s["height"], s["width"]) == (8, 32, 40)
    assert s["fps"] == 4.0 and s["text"] == "a square, number 0"
    img = ds[(4, 1, 24, 40)]
    assert img["video"].shape == (3, 1, 24, 40) and img["fps"] == 120
    assert torch.equal(ds["1-4-32-32"]["video"], ds["1-4-32-32"]["video"])  # seeded temporal crop


def test_dataset_fixed_size_mode(toy):
    ds = VideoTextDataset(toy, num_frames=4, image_size=(16, 16))
    assert ds[0]["video"].shape == (3, 4, 16, 16)
    assert ds[4]["video"].shape == (3, 4, 16, 16)  # an image repeated to a still clip


def test_index_errors():
    with pytest.raises(ValueError, match="idx-T-H-W"):
        parse_index("3-4-5")
    with pytest.raises(ValueError, match="needs the dataset's num_frames"):
        parse_index(3)


def test_dataset_skips_missing_and_corrupt_rows(toy):
    ds = VideoTextDataset(toy, seed=0)
    n = len(ds)
    assert ds[f"{n - 2}-8-32-32"] is None and ds[f"{n - 1}-8-32-32"] is None
    assert len(ds.skipped) == 2
    assert any("no such file" in r for r in ds.skipped.values())
    # a clip shorter than asked is skipped too (the meta table lied)
    assert ds["0-500-32-32"] is None and len(ds.skipped) == 3


def test_collate_drops_and_counts():
    a = dict(video=torch.zeros(3, 2, 4, 4), num_frames=2, height=4, width=4, index=0, ar=1.0, fps=8.0, text="x", path="p")
    b = collate_skip_none([a, None, a])
    assert b["video"].shape == (2, 3, 2, 4, 4) and b["skipped"] == 1 and b["size"] == 2 and b["text"] == ["x", "x"]
    e = collate_skip_none([None, None])
    assert e["video"] is None and e["skipped"] == 2


@pytest.mark.parametrize("workers", [0, 1])
def test_dataloader_epoch_survives_bad_rows(toy, workers):
    ds = VideoTextDataset(toy, seed=0)
    dl, sampler = prepare_dataloader(ds, TOY_CFG, num_workers=workers, seed=1, aspect_ratios=TOY_AR)
    skipped, seen = 0, []
    for batch in dl:
        skipped += batch["skipped"]
        if batch["video"] is not None:
            assert batch["video"].shape[0] == batch["size"]
            seen += batch["index"].tolist()
    assert skipped == 2
    assert len(seen) == len(ds) - 2 and len(set(seen)) == len(seen)


def test_parallel_assignment_equals_serial():
    from opensora_nb.data import assign_rows
    d = synthetic_meta(300, 2)
    b = Bucket(CFG)
    serial = assign_rows(b, d.num_frames, d.height, d.width, 1, 5)
    assert assign_rows(b, d.num_frames, d.height, d.width, 1, 5, workers=2, chunk=100) == serial
    assert serial == b.assign(d.num_frames, d.height, d.width, 1, 5)


def test_dataset_without_size_columns_works_in_fixed_mode(toy, tmp_path):
    "v1.0-style CSVs (path, text) still load at a fixed size; bucketing them says what is missing."
    df = pd.read_csv(toy)[["path", "text"]].head(2)
    df["path"] = [str(toy.parent / p) for p in df.path]
    df.to_csv(tmp_path / "v10.csv", index=False)
    ds = VideoTextDataset(tmp_path / "v10.csv", num_frames=4, image_size=(16, 16))
    assert ds[0]["video"].shape == (3, 4, 16, 16)
    with pytest.raises(ValueError, match="needed for bucketing"):
        list(VariableVideoBatchSampler(ds, TOY_CFG, aspect_ratios=TOY_AR))


# ---------------------------------------------------------------- why a clip gets no bucket
@pytest.mark.parametrize("thw,config,says", [
    ((300, 100, 100), "v1_2_stage1", "too small: 100x100 = 10000 pixels is under 80% of the smallest resolution's budget (144p"),
    ((40, 1080, 1920), "v1_2_stage1", "too short: the shortest length bucket of the candidate resolutions is 51 frames"),
    ((51, 240, 426), "v1_2_stage1", "needs more than 51 x interval 1 = 51 frames; it has 51"),
    ((60, 240, 426), {"144p": {1: (1.0, 4)}}, "a video, and the candidate resolutions (144p) have only image buckets"),
    ((1, 240, 426), {"240p": {51: (1.0, 4)}}, "an image, and no candidate resolution (240p) has a 1-frame bucket"),
    ((60, 240, 426), {"240p": {51: (0.0, None)}, "144p": {51: (0.0, None)}}, "not drawn: every bucket that fits missed"),
])
def test_explain_bucket_says_why_there_is_no_bucket(thw, config, says):
    from opensora_nb.buckets import explain_bucket
    cfg = BUCKET_PRESETS[config] if isinstance(config, str) else config
    e = explain_bucket(*thw, cfg)
    assert e["bucket"] is None and says in e["reason"], e["reason"]
    assert e["trace"], "each resolution's outcome is listed"


def test_explain_bucket_trace_is_the_assignment():
    "The explorer's trace is `get_bucket_id`'s own (issue 24: one implementation), and it never changes the answer."
    import opensora_nb.buckets as B
    assert not hasattr(B, "_bucket_trace")
    rng = np.random.default_rng(0)
    for preset in BUCKET_PRESETS.values():
        bk = Bucket(preset)
        for _ in range(1500):
            T = int(rng.choice([1, 20, 52, 60, 103, 205, 409, 500]))
            H, W = [(1080, 1920), (240, 426), (144, 256), (100, 100), (720, 1280), (2000, 2000)][rng.integers(6)]
            fi, seed = int(rng.integers(1, 3)), int(rng.integers(0, 100))
            trace = []
            bid = bk.get_bucket_id(T, H, W, fi, seed, trace=trace)
            assert bid == bk.get_bucket_id(T, H, W, fi, seed)
            assert ("taken" in trace[-1][1]) == (bid is not None)
            assert [r for r, _ in trace] == list(bk.hw_criteria)[:len(trace)]  # largest budget first, none skipped


# ---------------------------------------------------------------- names and sizes (issue 24)
def test_parse_size_is_public_and_inference_uses_it():
    import argparse
    from opensora_nb import inference
    from opensora_nb.buckets import parse_size
    assert parse_size("32x48") == (32, 48) and parse_size("240,426") == (240, 426)
    for bad in ("32", "32x", "x48", "32*48", "-1x4", "32x48x2"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected HxW"): parse_size(bad)
    assert not hasattr(inference, "_size")


@pytest.mark.parametrize("call, says", [
    (lambda B: B.get_image_size("999p", "1:1"), "unknown resolution '999p'; known: 144p, 256, 240p"),
    (lambda B: B.get_num_pixels("999p"), "unknown resolution '999p'"),
    (lambda B: B.get_image_size("240p", "7:3"), "aspect ratio '7:3' is not in the 240p table; use a name (3:8"),
])
def test_unknown_names_are_value_errors_that_are_also_key_errors(call, says):
    "Bad input: a ValueError (the CLI prints one line), still a KeyError for callers that catch one; the text as written."
    import opensora_nb.buckets as B
    with pytest.raises(ValueError) as e: call(B)
    assert isinstance(e.value, KeyError) and str(e.value).startswith(says) and not str(e.value).startswith("'")


def test_num_frames_names_what_is_allowed():
    from opensora_nb.buckets import get_num_frames
    assert get_num_frames("4s") == 102 and get_num_frames("9") == 9
    with pytest.raises(ValueError, match=r"num_frames 'four': expected a number of frames or a name \(1x, 2x"):
        get_num_frames("four")
