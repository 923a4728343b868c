"""nbdev's docs step passes on every notebook.

`nbdev_docs` / `nbdev_proc_nbs` run each notebook through nbdev's processors (`nbdev.processors.FilterDefaults`).
One of them, `exec_show_docs`, executes only some cells, in order, in a fresh shell: the exported cells
(`#| export`, `#| exports`, `#| exporti`, `#| exec_doc`), every cell whose code contains an `import` anywhere (even
inside a function), and `show_doc` cells; `#| eval: false` cells never. A cell it runs must therefore not use a name
that only a cell it skips defines. This test runs the same processors over every notebook of nbs/, all in one
process (as one nbdev worker does), from the project root (where `nbdev_docs` is run), and names the notebook and
cell that fail.

    python tests/test_docs_processing.py [NOTEBOOK...]     the same check from the shell, with the time per notebook
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))
TIMEOUT_PER_NOTEBOOK = 120


def _raw_index(path, source):
    "The index in the .ipynb file of the cell whose code (nbdev directives stripped) is `source`."
    want = [l for l in source.strip().splitlines() if l.strip()][:3]
    cells = json.loads(Path(path).read_text())["cells"]
    for i, c in enumerate(cells):
        code = [l for l in "".join(c["source"]).splitlines() if l.strip() and not l.lstrip().startswith("#|")]
        if want and code[:len(want)] == want: return i
    return "?"


def process(paths, timeout=TIMEOUT_PER_NOTEBOOK):
    "Run nbdev's docs processors over `paths` in this process: {name: (None or 'cell i: error ...', seconds)}."
    import signal
    import warnings
    os.environ["IN_TEST"] = "1"  # as nbdev.serve_drv sets it
    from execnb.nbio import read_nb
    from nbdev.processors import FilterDefaults

    def alarm(*_): raise TimeoutError(f"the docs step took over {timeout} s")
    signal.signal(signal.SIGALRM, alarm)
    out = {}
    for p in map(Path, paths):
        t0, err = time.time(), None
        signal.alarm(timeout)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                FilterDefaults()(read_nb(p))
        except BaseException as e:  # exec_show_docs: "Error in cell N : <source>" from the cell's exception
            cause = e.__cause__ or e
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            src = "\n".join(str(e).splitlines()[1:])
            err = f"{first.strip()} (cell {_raw_index(p, src)} of the .ipynb) {type(cause).__name__}: {str(cause)[:300]}\n" \
                  + "\n".join(src.splitlines()[:3])
        finally:
            signal.alarm(0)
        out[p.name] = (err, round(time.time() - t0, 1))
        import matplotlib.pyplot as plt
        plt.close("all")
    return out


@pytest.fixture(scope="module")
def results():
    "One subprocess over every notebook (a fresh interpreter, as nbdev's worker), from the project root."
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.time()
    r = subprocess.run([sys.executable, __file__, "--json", *map(str, NOTEBOOKS)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=TIMEOUT_PER_NOTEBOOK * len(NOTEBOOKS))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"\nnbdev docs step over {len(NOTEBOOKS)} notebooks: {time.time() - t0:.0f} s; slowest: "
          + ", ".join(f"{k} {v[1]} s" for k, v in sorted(res.items(), key=lambda kv: -kv[1][1])[:3]))
    return res


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_nbdev_docs_step(path, results):
    err, secs = results[path.name]
    assert err is None, f"{path.name}: nbdev's docs step fails: {err}"


if __name__ == "__main__":
    args = sys.argv[1:]
    as_json = args[:1] == ["--json"]
    paths = args[1:] if as_json else (args or NOTEBOOKS)
    res = process(paths)
    if as_json:
        print(json.dumps(res))
    else:
        for name, (err, secs) in res.items(): print(f"{'ok  ' if err is None else 'FAIL'} {name} {secs} s" + (f"\n  {err}" if err else ""))
        sys.exit(any(err for err, _ in res.values()))
