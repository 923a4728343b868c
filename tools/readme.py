"""Writes README.md from nbs/index.ipynb (what `nbdev_readme` does, without Quarto).

`nbdev_readme` renders through Quarto, and the `quarto-cli` package on PyPI is a source package that downloads
the Quarto binary from GitHub while it builds, which an offline machine cannot do. This script keeps the same
contract, README.md = index.ipynb rendered, with markdown cells as they are, exported/visible code cells as
python blocks and their text outputs, nbdev directives (`#|`) and hidden cells dropped.
Usage: `python tools/readme.py` (write) or `python tools/readme.py --check` (exit 1 when README.md is stale).
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def render(nb_path=ROOT / "nbs" / "index.ipynb") -> str:
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":  # a picture next to the notebook (nbs/images/...) is nbs/images/... from the root
            parts.append(src.strip().replace("](images/", "](nbs/images/"))
            continue
        lines = src.splitlines()
        directives = [l for l in lines if l.startswith("#|")]
        if any(d.split()[1:2] in (["hide"], ["export"], ["exporti"], ["default_exp"]) for d in directives):
            continue
        code = "\n".join(l for l in lines if not l.startswith("#|")).strip()
        if code:
            parts.append(f"```python\n{code}\n```")
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain")
            if text:
                parts.append("    " + "".join(text).rstrip().replace("\n", "\n    "))
    header = "<!-- generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file -->\n\n"
    return header + "\n\n".join(p for p in parts if p) + "\n"


if __name__ == "__main__":
    text, readme = render(), ROOT / "README.md"
    if "--check" in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit("README.md is stale: run `python tools/readme.py`")
    else:
        readme.write_text(text)
