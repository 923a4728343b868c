"""Small notebook edits from the shell (the notebooks stay the source of truth; run nbdev_export after).

python tools/nbedit.py find NB TEXT                 cells whose source contains TEXT (index, first line)
python tools/nbedit.py replace NB OLD NEW           replace OLD by NEW in the one cell that contains OLD (clears its outputs)
python tools/nbedit.py insert NB AFTER_TEXT FILE [markdown]  insert a cell (source from FILE, '-' = stdin) after the cell containing AFTER_TEXT
python tools/nbedit.py delete NB TEXT               delete the one cell that contains TEXT
"""
import json, sys, uuid
from pathlib import Path


def load(nb): return json.loads(Path(nb).read_text())


def save(nb, d): Path(nb).write_text(json.dumps(d, indent=1, ensure_ascii=False) + "\n")


def src(c): return "".join(c["source"])


def lines(s):
    out = s.splitlines(keepends=True)
    return out


def one(d, text):
    hits = [i for i, c in enumerate(d["cells"]) if text in src(c)]
    if len(hits) != 1: sys.exit(f"{len(hits)} cells contain {text!r}: {hits}")
    return hits[0]


def main(argv):
    cmd, nb = argv[0], argv[1]
    d = load(nb)
    if cmd == "find":
        for i, c in enumerate(d["cells"]):
            if argv[2] in src(c): print(i, c["cell_type"], src(c).splitlines()[0][:100] if src(c) else "")
        return
    if cmd == "replace":
        i = one(d, argv[2]); c = d["cells"][i]
        c["source"] = lines(src(c).replace(argv[2], argv[3]))
        if c["cell_type"] == "code": c["outputs"], c["execution_count"] = [], None
    elif cmd == "insert":
        i = one(d, argv[2])
        text = sys.stdin.read() if argv[3] == "-" else Path(argv[3]).read_text()
        kind = argv[4] if len(argv) > 4 else "code"
        cell = dict(cell_type=kind, id=uuid.uuid4().hex[:8], metadata={}, source=lines(text.rstrip("\n")))
        if kind == "code": cell.update(execution_count=None, outputs=[])
        d["cells"].insert(i + 1, cell)
    elif cmd == "delete":
        del d["cells"][one(d, argv[2])]
    else: sys.exit(__doc__)
    save(nb, d)


if __name__ == "__main__": main(sys.argv[1:])
