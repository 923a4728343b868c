"""Shared pytest options: `--golden-dir DIR` points the golden tests at any directory of golden files."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GOLDEN = ROOT.parent / "shared" / "golden"


def pytest_addoption(parser):
    parser.addoption(
        "--golden-dir",
        default=os.environ.get("OPENSORA_GOLDEN_DIR"),
        help="directory of Open-Sora reference outputs (default: ../shared/golden beside the project)",
    )


def golden_dir(config) -> Path:
    d = config.getoption("--golden-dir")
    return Path(d) if d else DEFAULT_GOLDEN


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
