"""Golden bucket assignments: every row of every `bucket_*.json` must match the reference exactly."""
from opensora_nb.buckets import Bucket


def check_num_bucket(case):
    assert Bucket(case.meta["bucket_config"]).num_bucket == case.meta["num_bucket"]


def check_rows(case):
    bk = Bucket(case.meta["bucket_config"])
    bad = []
    for i, row in enumerate(case.meta["rows"]):
        bid = bk.get_bucket_id(row["T"], row["H"], row["W"], row["frame_interval"], row["seed"])
        got = None if bid is None else list(bid)
        if got != row["bucket"]:
            bad.append((i, row, got))
            continue
        if bid is not None:
            thw, bs = list(bk.get_thw(bid)), bk.get_batch_size(bid)
            if thw != list(row["thw"]) or bs != row["batch_size"]:
                bad.append((i, row, (got, thw, bs)))
    assert not bad, f"{len(bad)} of {len(case.meta['rows'])} rows differ in {case.stem}, first: {bad[:3]}"
