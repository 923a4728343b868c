"""The golden cases of Open-Sora 1.1 kept in the project (tests/golden/stdit2_*, made by the reference's own code with
tests/golden/make_stdit2_golden.py), each checked by every `check_*` of tests/golden_kinds/stdit2.py. The same
Case/checker machinery as tests/test_golden.py, on the project's own golden folder."""
from pathlib import Path

import pytest

from test_golden import Case, cases, checks_for

GOLDEN = Path(__file__).parent / "golden"
STEMS = [s for s in cases(GOLDEN) if s.startswith("stdit2_")] if GOLDEN.is_dir() else []


def test_the_v1_1_golden_cases_are_there():
    assert {"stdit2_tiny", "stdit2_image"} <= set(STEMS), STEMS
    assert (GOLDEN / "make_stdit2_golden.py").exists()


@pytest.mark.parametrize("check", checks_for("stdit2"), ids=lambda f: f.__name__)
@pytest.mark.parametrize("stem", STEMS)
def test_stdit2_golden(stem, check):
    check(Case(GOLDEN, stem))
