"""Chapter 08's mask builder as the page shows it (issue 24, item 10).

The bug: given a bad 'ref lengths' (`1,x`) the builder showed its error but kept the previous picture under it.
The widget's own state (`picture_png is None`) was right, so a test of the state passed; what the user saw was
wrong, because the picture lives in an `ipywidgets.Output`, and what an Output shows is decided in the front end
from the messages the kernel sends it: `clear_output(wait=True)` only marks the area to be cleared *when the next
output arrives*, and on an error no output follows, so the old picture stays.

Two tests, both looking at what reaches the page rather than at the widget's Python state:

- `test_output_messages_clear_the_picture_on_error` runs the widget in a real IPython kernel (jupyter_client, a
  subprocess), changes the field the way a front end does (a comm `update` message), collects every IOPub message
  the kernel sends, and replays those addressed to the Output widget through the rules JupyterLab applies to them
  (`OutputAreaModel.clear(wait)` in @jupyterlab/outputarea: wait=True sets `clearNext`, which the next `add` honours;
  wait=False empties the area at once; @jupyter-widgets/jupyterlab-manager routes to an Output widget the messages
  whose parent is its `msg_id`). It runs wherever the test suite runs.
- `test_the_page_in_jupyterlab` drives a real JupyterLab in headless Chromium (skipped where chromium/chromedriver
  are not installed: `apt-get install chromium chromium-driver`): it runs the chapter's builder, types `1,x` into the
  field and reads the page's DOM: the error is shown and no picture is left in the output area.
"""
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = 'from opensora_nb.masks import mask_strategy_widget\nw = mask_strategy_widget("0,0,0,0,3", 8, "5")\nw'


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), MPLBACKEND="Agg",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("JPY_SESSION_NAME", None)
    return env


# ------------------------------------------------------------------ the kernel's messages, replayed as JupyterLab does
class FrontEndOutput:
    "What JupyterLab's Output widget shows, from the IOPub messages routed to it (see the module docstring)."
    def __init__(self): self.items, self.clear_next = [], False

    def feed(self, msg):
        kind, c = msg["header"]["msg_type"], msg["content"]
        if kind == "clear_output":
            if c.get("wait"): self.clear_next = True
            else: self.items, self.clear_next = [], False
        elif kind in ("display_data", "execute_result", "stream", "error"):
            if self.clear_next: self.items, self.clear_next = [], False
            self.items.append(kind if kind != "display_data" else sorted(c["data"]))

    def has_picture(self): return any(isinstance(i, list) and "image/png" in i for i in self.items)


def _iopub_until_idle(kc, parent_id, timeout=60):
    "Every IOPub message up to the kernel going idle after the request `parent_id`."
    out, end = [], time.time() + timeout
    while time.time() < end:
        try: m = kc.get_iopub_msg(timeout=1)
        except queue.Empty: continue
        out.append(m)
        if (m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                and m["parent_header"].get("msg_id") == parent_id): return out
    raise TimeoutError("the kernel did not go idle")


def test_output_messages_clear_the_picture_on_error():
    jupyter_client = pytest.importorskip("jupyter_client")
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(env=_env(), cwd=str(ROOT))
    kc = km.client(); kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        msgs = _iopub_until_idle(kc, kc.execute(MAKE), timeout=120)
        opened = {m["content"]["comm_id"]: m["content"]["data"]["state"] for m in msgs if m["header"]["msg_type"] == "comm_open"}
        field = next(k for k, s in opened.items() if s.get("description") == "ref lengths")
        output = next(k for k, s in opened.items() if s.get("_model_name") == "OutputModel")
        shown = FrontEndOutput()
        # the first picture: no front end was attached yet, so it is in the outputs the kernel recorded on the Output
        # widget or, where ipykernel routes it, in display messages; either way a picture is on show before the edit
        first = [m for m in msgs if m["header"]["msg_type"] == "display_data" and "image/png" in m["content"]["data"]]
        assert first or opened[output].get("outputs"), "the builder drew no first picture"
        shown.items = [["image/png", "text/plain"]]

        def edit(value):
            "Set the field as a front end does: a comm message, whose IOPub replies the Output widget may claim."
            msg = kc.session.msg("comm_msg", {"comm_id": field, "data": {"method": "update", "state": {"value": value},
                                                                         "buffer_paths": []}})
            kc.shell_channel.send(msg)
            msg_id, routed = None, []
            for m in _iopub_until_idle(kc, msg["header"]["msg_id"]):
                c = m["content"]
                if m["header"]["msg_type"] == "comm_msg" and c.get("comm_id") == output:
                    msg_id = c["data"].get("state", {}).get("msg_id", msg_id)  # the Output claims a parent id
                elif msg_id and m["parent_header"].get("msg_id") == msg_id:
                    shown.feed(m); routed.append((m["header"]["msg_type"], c.get("wait")))
            return routed

        edit("5,1")                      # a good input: the picture is redrawn
        assert shown.has_picture()
        routed = edit("1,x")             # a bad one: the error, and the picture must go
        assert not shown.has_picture(), f"the page still shows the last picture; messages it got: {routed}"
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)


# ------------------------------------------------------------------ the page itself, in JupyterLab and Chromium
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"),
                    reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)")
def test_the_page_in_jupyterlab(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "a1", "metadata": {}, "outputs": [],
                     "source": MAKE}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "w.ipynb").write_text(json.dumps(nb))
    port, token = _free_port(), "t0k3n"
    env = _env(); env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "cfg"); env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "ws")
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
                               "--LabApp.expose_app_in_browser=True", "--allow-root", "--LabApp.news_url=None",
                               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"))
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(a)
    driver = None
    try:
        for _ in range(120):                       # the server answers
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
            except OSError: time.sleep(0.5)
        opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
        driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
        driver.get(f"http://127.0.0.1:{port}/lab/tree/w.ipynb?token={token}")
        wait = WebDriverWait(driver, 180, poll_frequency=0.5)
        wait.until(lambda d: d.execute_script(
            "const a = window.jupyterapp; const w = a && a.shell.currentWidget;"
            "return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
            " && w.sessionContext.session.kernel.status === 'idle');"))
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        pictures = "return document.querySelectorAll('.jupyter-widgets-output-area img, .widget-output img').length"
        wait.until(lambda d: d.execute_script(pictures) > 0)              # the builder's first picture is on the page
        box = next(e for e in driver.find_elements(By.CSS_SELECTOR, ".widget-text")
                   if "ref lengths" in e.text)
        field = box.find_element(By.TAG_NAME, "input")
        field.click(); field.send_keys("\ue009a"); field.send_keys("1,x")   # ctrl-a, then type the bad value
        wait.until(lambda d: "cannot draw this input" in d.find_element(By.CSS_SELECTOR, ".widget-html").text
                   and "'x' is not a whole number" in d.find_element(By.CSS_SELECTOR, ".widget-html").text)
        time.sleep(2)                                                     # let any late output arrive
        assert driver.execute_script(pictures) == 0, "the error is shown but the last picture is still on the page"
        field.send_keys("\ue003\ue003"); field.send_keys("2")            # backspace twice: '12', a good input again
        wait.until(lambda d: d.execute_script(pictures) == 1)
        assert driver.find_element(By.CSS_SELECTOR, ".widget-html").text.strip() == ""
    finally:
        if driver is not None: driver.quit()
        server.terminate()
        try: server.wait(timeout=20)
        except subprocess.TimeoutExpired: server.kill()
