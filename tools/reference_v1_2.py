"""Import pieces of the reference Open-Sora (hpcaitech/Open-Sora, tag v1.2.0) without installing it, to make golden files.

The reference's files are read from a git mirror of the repository (`--repo`, or $OPENSORA_REF_REPO) at the tag, written
under a temporary folder as the package `opensora`, and the few heavy imports they make at module level (the registry,
the dataset module) are replaced by small stand-ins that provide only the names those files use. Nothing here is
imported by the package or by the tests: the tests read the golden files this produces.
"""
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

TAG = "v1.2.0"
DEFAULT_REPO = "/work/.mirror/hpcaitech+Open-Sora/repo"


def repo_path(repo=None) -> str:
    return repo or os.environ.get("OPENSORA_REF_REPO", DEFAULT_REPO)


def commit(repo=None, tag=TAG) -> str:
    "The commit hash the tag points at."
    return subprocess.check_output(["git", "-C", repo_path(repo), "rev-parse", f"{tag}^{{commit}}"], text=True).strip()


def show(path, repo=None, tag=TAG) -> str:
    "The text of one file of the reference at the tag."
    return subprocess.check_output(["git", "-C", repo_path(repo), "show", f"{tag}:{path}"], text=True)


class _Registry:
    "Stand-in for mmengine's Registry: `register_module` returns the class or function unchanged."
    def register_module(self, name=None, *a, **k):
        if callable(name): return name
        return lambda obj: obj


def load(paths, repo=None, tag=TAG):
    """Write the reference's `paths` (e.g. 'opensora/utils/inference_utils.py') under a fresh folder, stub the registry and
    the dataset package, put the folder first on sys.path and return it. Import the modules afterwards as usual."""
    root = Path(tempfile.mkdtemp(prefix="opensora_ref_"))
    for p in paths:
        dst = root / p
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(show(p, repo, tag))
        for d in dst.parents:  # every folder a package (empty __init__ unless the file itself is one)
            if d == root: break
            (d / "__init__.py").touch(exist_ok=True)
    reg = types.ModuleType("opensora.registry")
    reg.MODELS, reg.SCHEDULERS, reg.DATASETS = _Registry(), _Registry(), _Registry()
    reg.build_module = lambda *a, **k: None
    sys.modules["opensora.registry"] = reg
    ds = types.ModuleType("opensora.datasets"); ds.__path__ = []
    ds.IMG_FPS = 120  # opensora/datasets/datasets.py at v1.2.0
    ds_utils = types.ModuleType("opensora.datasets.utils")
    def read_from_path(*a, **k): raise NotImplementedError("reference files are not read in these golden cases")
    ds_utils.read_from_path = read_from_path
    sys.modules["opensora.datasets"], sys.modules["opensora.datasets.utils"] = ds, ds_utils
    sys.path.insert(0, str(root))
    return root
