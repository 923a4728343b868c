"""The golden cases of Open-Sora 1.1 kept in the project, made by the reference's own code: tests/golden/stdit2_*
(make_stdit2_golden.py; checked by every `check_*` of tests/golden_kinds/stdit2.py) and tests/golden/iddpm_v1_1_*
(make_iddpm_v1_1_golden.py; tests/golden_kinds/iddpm_v1_1.py). The same Case/checker machinery as
tests/test_golden.py, on the project's own golden folder."""
from pathlib import Path

import pytest

from test_golden import Case, cases, checks_for

from opensora_nb.versions import IDDPMSampler

GOLDEN = Path(__file__).parent / "golden"
ALL = cases(GOLDEN) if GOLDEN.is_dir() else []
STEMS = [s for s in ALL if s.startswith("stdit2_")]
IDDPM_STEMS = [s for s in ALL if s.startswith("iddpm_v1_1_")]


def test_the_v1_1_golden_cases_are_there():
    assert {"stdit2_tiny", "stdit2_image"} <= set(STEMS), STEMS
    assert IDDPM_STEMS == ["iddpm_v1_1_masked"], IDDPM_STEMS
    assert (GOLDEN / "make_stdit2_golden.py").exists() and (GOLDEN / "make_iddpm_v1_1_golden.py").exists()


@pytest.mark.parametrize("check", checks_for("stdit2"), ids=lambda f: f.__name__)
@pytest.mark.parametrize("stem", STEMS)
def test_stdit2_golden(stem, check):
    check(Case(GOLDEN, stem))


@pytest.mark.parametrize("check", checks_for("iddpm_v1_1"), ids=lambda f: f.__name__)
@pytest.mark.parametrize("stem", IDDPM_STEMS)
def test_iddpm_v1_1_golden(stem, check):
    check(Case(GOLDEN, stem))


def test_v1_0_float64_schedule_misses_the_v1_1_golden(monkeypatch):
    "1.1 respaces into float32 betas (1.0 kept float64): sampling 1.1 on the float64 tables does not meet its golden."
    check = next(f for f in checks_for("iddpm_v1_1") if f.__name__ == "check_iddpm_v1_1_masked_sample")
    s = Case(GOLDEN, IDDPM_STEMS[0]).meta["sample"]
    monkeypatch.setitem(check.__globals__, "_sampler",
                        lambda c: IDDPMSampler(s["steps"], s["cfg_scale"], s["cfg_channel"], frame_conditioning=True))
    with pytest.raises(AssertionError, match="sample.out"):
        check(Case(GOLDEN, IDDPM_STEMS[0]))
