"""Ship a demo run's trained tiny-world pipeline inside the package: `python tools/ship_pipeline.py RUN_DIR`.

RUN_DIR is an `opensora-nb demo` output folder (its `pipeline/` is read) or a pipeline folder itself. The run's VAE must be
the shipped world VAE (`opensora_nb/assets/world_vae`, byte for byte): the shipped pipeline points at it ("world") instead
of storing it twice. Writes `opensora_nb/assets/world_pipeline/` (model_index.json, transformer/, sha256.json checked on
every load, SHIPPED.md with the command that reproduces it) atomically: a temporary folder renamed into place.
"""
import argparse
import json
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPRODUCE = "opensora-nb demo{flags} --output outputs/demo && python tools/ship_pipeline.py outputs/demo"


def reproduce(run: Path) -> str:
    "The command that makes this run's model again: the demo's training processes and sampling steps, as the run had them."
    r = json.loads((run / "report.json").read_text()) if (run / "report.json").exists() else {}
    flags = f" --processes {r.get('processes', 1)}" if r else ""
    if r.get("sampling", {}).get("steps"): flags += f" --sampling-steps {r['sampling']['steps']}"
    return REPRODUCE.format(flags=flags)


def _summary(run: Path) -> list:
    "A few lines of the run's report.json (when there is one): what the shipped model is and how well it does."
    if not (run / "report.json").exists(): return []
    r = json.loads((run / "report.json").read_text())
    lines = [f"- STDiT3, {r.get('num_params', 0) / 1e6:.2f}M parameters, {r.get('steps')} training steps, seed {r.get('seed')}"]
    for k in ("color_accuracy", "direction_accuracy", "single_object_rate"):
        if k in r: lines.append(f"- held-out prompts, {k.replace('_', ' ')}: {json.dumps(r[k] if not isinstance(r[k], float) else round(r[k], 3))}")
    return lines


def ship(run, dest=None) -> Path:
    from opensora_nb.inference import CHECKSUM_FILE, WORLD_PIPELINE_DIR, _sha256, folder_checksums
    from opensora_nb.vae_hub import WORLD_VAE_DIR
    run = Path(run)
    src = run if (run / "model_index.json").exists() else run / "pipeline"
    if not (src / "model_index.json").exists(): raise SystemExit(f"{run}: no pipeline/model_index.json (is it an `opensora-nb demo` folder?)")
    index = json.loads((src / "model_index.json").read_text())
    if index["vae"].get("type") != "tiny_v1_2": raise SystemExit(f"{src}: vae type {index['vae'].get('type')!r} is not the tiny world's")
    run_vae = src / "vae" / "model.safetensors"
    if run_vae.exists() and _sha256(run_vae) != _sha256(WORLD_VAE_DIR / "model.safetensors"):
        raise SystemExit(f"{run_vae} is not the shipped world VAE ({WORLD_VAE_DIR}): ship that VAE first (chapter 03b), "
                         "then rerun the demo with it")
    dest = Path(dest or WORLD_PIPELINE_DIR)
    tmp = Path(tempfile.mkdtemp(prefix=".ship-", dir=dest.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep other users of an installed package out
        shutil.copytree(src / "transformer", tmp / "transformer", copy_function=shutil.copyfile)  # files 0644, not the run's modes
        index["vae"] = dict(type="tiny_v1_2", from_pretrained="world")  # the shipped world VAE, not a copy
        (tmp / "model_index.json").write_text(json.dumps(index, indent=1) + "\n")
        (tmp / CHECKSUM_FILE).write_text(json.dumps(folder_checksums(tmp, WORLD_VAE_DIR), indent=1) + "\n")
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        (tmp / "SHIPPED.md").write_text("\n".join([
            "# The shipped tiny-world pipeline", "",
            f"Shipped {when} from a demo run by `python tools/ship_pipeline.py RUN_DIR`; the VAE is the shipped world VAE",
            "(`../world_vae`, named \"world\" in model_index.json). Reproduce it (about 10 minutes on a 2-core CPU):", "",
            f"    {reproduce(run)}", "", *_summary(run), ""]))
        if dest.exists(): shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists(): shutil.rmtree(tmp)
    return dest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="an `opensora-nb demo` output folder (or its pipeline/ folder)")
    p.add_argument("--dest", default=None, help="where to write (default: the package's assets/world_pipeline)")
    a = p.parse_args(argv)
    dest = ship(a.run, a.dest)
    from opensora_nb.inference import OpenSoraPipeline
    from opensora_nb.samples import judge_clip
    pipe = OpenSoraPipeline.from_pretrained(dest)  # checksums checked on load
    res = pipe("a large red circle moving left on a dark background", seed=0, progress=False)
    print(f"shipped {dest}; 'a large red circle moving left': judged {judge_clip(res['videos'][0])}")


if __name__ == "__main__":
    main()
