"""Curation stages on Ray (chapter 10b_curation_run): skipped when Ray is not installed or cannot start on this machine."""
from pathlib import Path

import pandas as pd
import pytest

from opensora_nb import curation as C
from opensora_nb import curation_run as R
from opensora_nb.io import write_video


def test_ray_backend(tmp_path):
    ray = pytest.importorskip("ray")
    paths = []
    for i, m in enumerate(("pan left", "static")):
        paths.append(str(tmp_path / f"clip{i}.mp4"))
        write_video(paths[-1], C.synthetic_camera_clip(m, 16, seed=i), fps=8)
    meta = pd.DataFrame({"path": paths + [str(tmp_path / "missing.mp4")]})
    try:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    except Exception as e:                                  # e.g. a node start-up timeout on an overloaded machine
        pytest.skip(f"Ray could not start here: {e}")
    try:
        df = R.run_stage(meta, R.MotionStage(), tmp_path / "ray.csv", backend="ray", batch_size=2)
    finally:
        ray.shutdown()
    assert list(df.cmotion.iloc[:2]) == ["pan left", "static"]
    assert df.error.fillna("").iloc[2].startswith("motion: VideoReadError")
