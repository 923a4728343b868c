"""settings.ini's torch floor covers the torch APIs the package calls (issue 24 item 6): `torch.is_autocast_enabled("cpu")`,
with a device type, needs torch 2.4, so `torch>=2.1` promised an install on which float32 CPU linear layers above 4096
rows crash (chapter 05's oneDNN path asks it)."""
import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: torch APIs newer than torch 2.0 that the package calls: (a regex over opensora_nb/*.py, the first torch that has it)
VERSION_GATED = {
    "torch.is_autocast_enabled(device_type)": (r"torch\.is_autocast_enabled\(\s*[\"'\w]", (2, 4)),
    "torch.amp.GradScaler(device)": (r"torch\.amp\.GradScaler\(", (2, 3)),
    "torch.nn.attention.sdpa_kernel": (r"torch\.nn\.attention import .*sdpa_kernel", (2, 3)),
    "torch.compiler.is_compiling": (r"torch\.compiler\.is_compiling\(", (2, 3)),
}


def torch_floor():
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini")
    m = re.search(r"(?<![\w-])torch>=(\d+)\.(\d+)", cfg["DEFAULT"]["requirements"])
    assert m, "settings.ini's requirements name no torch floor"
    return int(m.group(1)), int(m.group(2))


def package_source():
    return {p.name: p.read_text() for p in (ROOT / "opensora_nb").glob("*.py") if p.name != "_modidx.py"}


def test_torch_floor_covers_every_version_gated_api():
    src, floor = package_source(), torch_floor()
    used = {name: since for name, (pattern, since) in VERSION_GATED.items() if any(re.search(pattern, s) for s in src.values())}
    assert "torch.is_autocast_enabled(device_type)" in used, "the list's patterns no longer match the package: update them"
    too_new = {name: ".".join(map(str, since)) for name, since in used.items() if since > floor}
    assert not too_new, f"settings.ini says torch>={floor[0]}.{floor[1]}, but the package calls {too_new}"


def test_the_floor_is_2_4():
    assert torch_floor() >= (2, 4)
