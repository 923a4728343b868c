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


def pytest_terminal_summary(terminalreporter):
    "List every registered golden divergence (tests/golden_compare.py) a golden test applied instead of failing."
    rows = [(r.nodeid, v) for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])
            if getattr(r, "when", None) == "call" for k, v in getattr(r, "user_properties", ()) if k == "golden_divergence"]
    if rows:
        terminalreporter.section("golden divergences applied")
        for nodeid, msg in rows:
            terminalreporter.line(f"{nodeid}: {msg}")
