"""Every `opensora-nb` command line of the README runs as written (issue 24), in a fresh folder, as a new user runs it:
the same words, with only the flags that make it small added (the demo's steps and videos, sampling steps, frames).
`opensora-nb sample --official` reads the official hub ids from a hub cache holding tiny random checkpoints in the
official layouts (`official_layout.write_official_hub_cache`), offline, as a user's cache after a download.
A README line this file does not know fails the test: a new command must be added here, so none can go stale."""
import os
import re
import shlex
import subprocess
from pathlib import Path

from official_layout import write_official_hub_cache

ROOT = Path(__file__).resolve().parents[1]
#: the flags that make each README command small enough for the suite (the README's words come first, unchanged)
SMALL = {
    "demo": ["--max-steps", "12", "--videos", "3", "--depth", "1", "--hidden-size", "32", "--sampling-steps", "3",
             "--eval-every", "6", "--threads", "1", "--quiet"],
    "sample": ["--sampling-steps", "2", "--quiet"],
    "sample --official": ["--sampling-steps", "2", "--resolution", "144p", "--num-frames", "1", "--quiet"],
    "finetune": ["--max-steps", "2", "--quiet"],
    "vae": ["--scale", "0.002", "--quiet"],
}
#: the README's placeholders, and what a user puts there
PLACEHOLDERS = {"CLIPS": "my_clips", "...": "a small red circle moving up on a dark background"}


def readme_commands():
    "Every `opensora-nb ...` command of the README: in code blocks and in inline code, in order, deduplicated."
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"(?:`|&& )(opensora-nb [^`\n]+)", text)  # inline code, or after `&&` on a command line
    return list(dict.fromkeys(c.strip() for c in found))


def _kind(args):
    if args[0] == "sample" and "--official" in args: return "sample --official"
    return args[0]


def _write_clips(folder):
    "Four captioned clips of the tiny world, as a user's folder of clips with .txt captions."
    from opensora_nb.io import write_video
    from opensora_nb.samples import world_caption, world_clip
    folder.mkdir()
    for i, (s, c, d) in enumerate([("circle", "red", "left"), ("square", "blue", "up"), ("triangle", "green", "right"),
                                   ("circle", "yellow", "down")]):
        write_video(folder / f"clip{i}.mp4", world_clip(s, c, d, 1.4, "large", 9, 32, 32, seed=i))
        (folder / f"clip{i}.txt").write_text(world_caption(s, c, d, "large"))


def _run(cmd, cwd, env):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{shlex.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def _serve(cmd, cwd, env, timeout=300):
    "`opensora-nb app` as written (on a free port instead of 7860, which may be taken): its page comes up; then it is stopped."
    import importlib.util, socket, time, urllib.request
    if importlib.util.find_spec("gradio") is None:  # without the `app` extra: the one line naming it
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 1 and '-e ".[app]"' in r.stderr, r.stderr; return
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    proc = subprocess.Popen(cmd + ["--port", str(port)], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while True:
            try: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2); break
            except OSError:
                assert proc.poll() is None and time.time() - t0 < timeout, f"{shlex.join(cmd)}: no page ({proc.poll()})"
                time.sleep(0.5)
    finally:
        proc.terminate(); proc.wait(30)


def test_every_readme_command_runs_as_written(tmp_path):
    cmds = readme_commands()
    full = [c for c in cmds if len(shlex.split(c)) > 2 or c.split()[1] in ("demo", "app")]
    names = [c for c in cmds if c not in full]
    known = {"opensora-nb demo", 'opensora-nb sample --official --prompt "a cat playing piano"',
             "opensora-nb finetune CLIPS --base outputs/demo/pipeline --method lora",
             "opensora-nb sample outputs/demo/pipeline --lora outputs/finetune --prompt ...", "opensora-nb vae --world",
             "opensora-nb app", 'opensora-nb sample --prompt "a large red circle moving left on a dark background"'}
    assert set(full) <= known, f"README commands this test does not run yet: {set(full) - known}"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg",
               HF_HUB_CACHE=str(write_official_hub_cache(tmp_path / "hub")))
    user = tmp_path / "user"; user.mkdir()
    _write_clips(user / "my_clips")
    exe = ["opensora-nb"]  # the console script the README's install puts on the PATH
    for c in full:  # in README order: the demo's pipeline exists before finetune and sample read it
        args = [PLACEHOLDERS.get(a, a) for a in shlex.split(c)[1:]]
        if args[0] == "app": _serve(exe + args, user, env); continue
        _run(exe + args + SMALL[_kind(args)], user, env)
    assert (user / "outputs/demo/report.json").exists() and (user / "outputs/finetune/adapter_config.json").exists()
    assert list((user / "outputs/samples").glob("*.mp4")) or list((user / "outputs/samples").glob("*.png"))
    for c in names:  # a bare command name in the chapter table: it exists and explains itself
        assert "usage" in _run(exe + c.split()[1:] + ["--help"], user, env).stdout
