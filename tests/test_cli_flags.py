"""One meaning per flag name across every subcommand (issue 24; the table is in chapter 16): read from each job's own
`--help`, so a new flag that breaks the rule fails here."""
import re
import subprocess
import sys

import pytest

from opensora_nb.cli import FLAG_MEANINGS, SUBCOMMANDS

JOBS = [["opensora-nb", c] for c in SUBCOMMANDS] + [[sys.executable, "-m", "opensora_nb.launch", c] for c in ("train", "sample")]


def _options(cmd):
    r = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = re.sub(r"\s+", " ", r.stdout)
    return set(re.findall(r"(?<![\w-])(--?[a-z][\w.-]*)", text.split("options:", 1)[-1])), text


@pytest.mark.parametrize("cmd", JOBS, ids=[" ".join(c[-2:]) for c in JOBS])
def test_one_meaning_per_flag(cmd):
    opts, text = _options(cmd)
    if "--out" in opts: assert "--output" in opts and "-o" in opts, "--out is only an old spelling of --output/-o"
    assert "--steps" not in opts, "--steps is ambiguous: --max-steps (training) or --sampling-steps (sampling)"
    if "--dtype" in opts:
        assert "compute precision" in text, "--dtype means the precision the model computes in"
    for flag in opts & set(FLAG_MEANINGS):
        assert flag in text  # the flag is described by the job itself


def test_old_steps_spelling_says_which_it_means(tmp_path):
    "`sample --steps N` still works as `--sampling-steps N`, with one line naming the new flag."
    r = subprocess.run(["opensora-nb", "sample", str(tmp_path / "nope"), "--steps", "2", "--prompt", "x"], capture_output=True, text=True)
    assert r.returncode == 2 and "--sampling-steps" in r.stderr and "Traceback" not in r.stderr
