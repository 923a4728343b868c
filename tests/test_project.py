"""The project's own promises: README in sync with the index notebook, the CLI installed, a clean install spec."""
import configparser
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, "tools/readme.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    readme = re.sub(r"\s*\\\n\s*", " ", readme)  # a command continued over lines (` \` + newline) is one line
    cmd = next(l for l in readme.splitlines() if "nbdev_test" in l and l.startswith("pip install"))
    for part in (c.strip() for c in cmd.split("&&")):
        assert part.replace("pip install", "pip install -q") in ci, part


def test_cli_help():
    r = subprocess.run(["opensora-nb", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "demo" in r.stdout, r.stderr


def test_install_spec_never_pulls_colossalai_or_pins_torch():
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini")
    reqs = " ".join(v for k, v in cfg["DEFAULT"].items() if k.endswith("requirements"))
    assert "colossalai" not in reqs, "colossalai's own pins downgrade torch: install it with --no-deps"
    torch_reqs = re.findall(r"(?<![\w-])torch[^\s]*", reqs)
    assert torch_reqs == ["torch>=2.4"], torch_reqs  # the floor the code needs: tests/test_requirements.py
    assert (ROOT / "constraints.txt").read_text().strip() == "torch==2.13.0"
