"""JupyterLab for learners: working copies, the ``jupyter lab`` command, the quiet kernel, and a real browser.

The ``browser`` tests start JupyterLab from this environment on 127.0.0.1 (token, free port) over the
committed notebooks and a quick-profile course output, and drive Debian's Chromium through Playwright.
Without Chromium they are skipped (``apt-get install chromium`` and ``pip install -e .[dev]`` enable
them); with ``CI=true`` a missing browser is a failure. Screenshots go to ``outputs/lab_screenshots/``.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import numpy as np
import pytest

from facesegm_utils import course, lab

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = course.REPO_ROOT / "outputs" / "lab_screenshots"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_working_copies_are_made_once_and_never_overwritten(tmp_path: Path) -> None:
    dst = tmp_path / "lab"
    created, kept = lab.working_copies(dst=dst)
    assert [p.name for p in created] == [p.name for p in course.list_notebooks()] and not kept
    hidden = 0
    for copy in created:  # as committed, less the exercises' reference solutions (the stubs stay)
        committed = nbformat.read(course.NOTEBOOK_DIR / copy.name, as_version=4)
        learner = nbformat.read(copy, as_version=4)
        kept_cells = [c for c in committed.cells if "solution" not in c.metadata.get("tags", [])]
        assert learner.cells == kept_cells and learner.metadata == committed.metadata
        hidden += len(committed.cells) - len(kept_cells)
    assert hidden > 0, "no reference solution was left out of the learner's copies"
    edited = created[0]
    edited.write_text("learner's work")
    (created[1]).unlink()  # deleting one gives a fresh copy of that one only
    again, kept = lab.working_copies(dst=dst)
    assert [p.name for p in again] == [created[1].name] and len(kept) == len(created) - 1
    assert edited.read_text() == "learner's work"


def test_lab_folder_keeps_the_notebooks_default_paths_and_is_ignored_by_git() -> None:
    assert lab.LAB_DIR.parent == course.NOTEBOOK_DIR.parent  # a sibling of notebooks/
    params = nbformat.read(course.list_notebooks()[0], as_version=4).cells[1].source
    assert 'OUT_DIR = "../outputs"' in params
    assert (lab.LAB_DIR / "../outputs").resolve() == (course.NOTEBOOK_DIR / "../outputs").resolve()
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "lab/01_data_exploration.ipynb"], cwd=course.REPO_ROOT, check=False
    )
    assert ignored.returncode == 0, "lab/ must be ignored by git"


def test_allow_root_only_as_root(tmp_path: Path) -> None:
    as_root = lab.lab_command(tmp_path, port=8888, token="t", ip="127.0.0.1", as_root=True)
    as_user = lab.lab_command(tmp_path, as_root=False, extra=["--no-browser"])
    assert "--allow-root" in as_root and "--allow-root" not in as_user
    assert f"--ServerApp.root_dir={tmp_path}" in as_user and as_user[-1] == "--no-browser"
    assert {"--port=8888", "--ip=127.0.0.1", "--IdentityProvider.token=t"} <= set(as_root)


def test_make_lab_says_where_the_copies_are(monkeypatch, capsys, tmp_path: Path) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(lab, "LAB_DIR", course.REPO_ROOT / tmp_path.name)
    monkeypatch.setattr(lab, "working_copies", lambda: ([tmp_path / "01.ipynb"], []))
    monkeypatch.setattr(lab, "running_as_root", lambda: True)
    monkeypatch.setattr(lab.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert lab.main(["--no-browser"]) == 0
    out = capsys.readouterr().out
    assert "made working copies of 1 notebook" in out and "passing --allow-root" in out
    assert calls and "--allow-root" in calls[0] and calls[0][-1] == "--no-browser"


def test_kernel_registration_quiets_tensorflow() -> None:
    makefile = (course.REPO_ROOT / "Makefile").read_text()
    assert "--env TF_CPP_MIN_LOG_LEVEL 3" in makefile
    assert "capture_fd_output=False" in makefile


@pytest.mark.slow
@pytest.mark.parametrize("path", course.list_notebooks(), ids=lambda p: p.stem)
def test_first_cells_show_no_stderr_in_the_course_kernel(path: Path, request: pytest.FixtureRequest) -> None:
    """The cells up to ``env.report()``, run in the registered ``python3`` kernel as JupyterLab runs
    them (no papermill, no course runner environment): no stderr output, no error."""
    from nbclient import NotebookClient

    prepared = os.environ.get("FACESEGM_LAB_COURSE")
    out = Path(prepared) if prepared else Path(request.getfixturevalue("quick_course")["out_dir"])
    nb = nbformat.read(path, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "env.report()" in c.source)
    cells = [c for c in nb.cells[: first + 1] if c.cell_type == "code"]
    paths = nbformat.v4.new_code_cell(f"RAW_DIR = {str(out / 'synthetic')!r}\nOUT_DIR = {str(out)!r}")
    nb.cells = [cells[0], paths, *cells[1:]]
    env = _kernel_env()
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(path.parent)}}
    )
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    noisy = [o.get("text", "")[:300] for o in outputs if o.get("name") == "stderr"]
    assert noisy == [], f"{path.name}: stderr in its first cells"
    assert not [o for o in outputs if o.get("output_type") == "error"]


# ----------------------------------------------------------------------------------------- browser


def _browser_or_skip() -> None:
    reason = None
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        reason = f"no Chromium at {CHROMIUM}: `apt-get install chromium` enables the browser tests"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "Playwright is missing: `pip install -e .[dev]` enables the browser tests"
    if reason and os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the browser tests cannot run: {reason}")
    if reason:
        pytest.skip(reason)


def _kernel_env() -> dict[str, str]:
    """This environment as a learner's shell has it: no TF_CPP_MIN_LOG_LEVEL (the kernelspec sets its
    own), and no PYTEST_CURRENT_TEST, in whose presence ipykernel stops capturing C-level output."""
    return {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTEST_CURRENT_TEST")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server (this environment) over ``root``; ``get`` calls its REST API."""

    def __init__(self, root: Path, home: Path):
        self.root = root
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(
            _kernel_env(),
            JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        )
        cmd = lab.lab_command(root, port=self.port, token=self.token, ip="127.0.0.1", extra=["--no-browser"])
        self.log = (home / "server.log").open("w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            try:
                self.get("/api/status")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; see {home / 'server.log'}") from None
                time.sleep(0.5)

    def get(self, path: str) -> object:
        with urllib.request.urlopen(f"{self.base}{path}?token={self.token}", timeout=10) as r:
            return json.load(r)

    def wait_idle(self, timeout: float = 600) -> None:
        """Until every kernel reports idle on 3 polls in a row, 1 s apart."""
        deadline, quiet = time.monotonic() + timeout, 0
        while quiet < 3:
            try:
                kernels = self.get("/api/kernels")
            except OSError:  # a slow answer on a busy machine: poll again
                kernels = []
            quiet = quiet + 1 if kernels and all(k["execution_state"] == "idle" for k in kernels) else 0
            assert time.monotonic() < deadline, "the kernel did not become idle"
            time.sleep(1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def lab_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab over working copies of the committed notebooks, with ``../outputs`` = the course output.

    The course output is the session's ``quick_course``, or ``FACESEGM_LAB_COURSE`` when set (a folder
    holding a finished quick-profile run, to iterate on these tests without re-running the course).
    """
    _browser_or_skip()
    prepared = os.environ.get("FACESEGM_LAB_COURSE")
    out = Path(prepared) if prepared else Path(request.getfixturevalue("quick_course")["out_dir"])
    home = tmp_path_factory.mktemp("lab_home")
    (home / "outputs").symlink_to(out.resolve(), target_is_directory=True)
    lab.working_copies(dst=home / "lab")  # exactly what `make lab` gives a learner
    server = Lab(home / "lab", home)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(lab_server: Lab) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        pg = browser.new_page(viewport={"width": 1500, "height": 1100})
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def _open(page, server: Lab, name: str) -> None:
    page.goto(f"{server.base}/lab/workspaces/{name[:2]}/tree/{name}?reset&token={server.token}")
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell >> nth=0")
    server.wait_idle()
    no = page.locator('.jp-Notification-Toast button:has-text("No")')
    if no.count():
        no.first.click()


def _run_all(page, server: Lab) -> None:
    page.click('.lm-MenuBar-itemLabel:has-text("Run")')
    page.click('.lm-Menu-content .lm-Menu-itemLabel:has-text("Run All Cells")')
    deadline = time.monotonic() + 900
    time.sleep(2)
    while any("*" in t for t in page.locator(".jp-CodeCell .jp-InputArea-prompt").all_text_contents()):
        assert time.monotonic() < deadline, "Run All did not finish"
        time.sleep(1)
    server.wait_idle()


def _problems(page) -> list[str]:
    sel = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.{}']"
    return [
        t[:500] for kind in ("stderr", "error") for t in page.locator(sel.format(kind)).all_text_contents()
    ]


def _pixels(locator) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB"), dtype=np.int16)


def _changes(page, ui, action) -> tuple[float, float]:
    """Mean pixel change of the (after, before) images caused by ``action``."""
    after, before = ui.locator("img.widget-image").nth(1), ui.locator("img.widget-image").nth(0)
    a0, b0, src0 = _pixels(after), _pixels(before), after.get_attribute("src")
    action()
    deadline = time.monotonic() + 30
    while after.get_attribute("src") == src0 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    return float(np.abs(_pixels(after) - a0).mean()), float(np.abs(_pixels(before) - b0).mean())


@pytest.mark.slow
@pytest.mark.browser
def test_opening_any_notebook_leaves_it_unmodified(page, lab_server: Lab) -> None:
    """Each notebook opened with its kernel started: no modified marker, and the file on disk is unchanged."""
    for nb in course.list_notebooks():
        _open(page, lab_server, nb.name)
        time.sleep(2)  # let metadata from the kernel's info reply arrive
        assert page.locator(".lm-TabBar-tab.lm-mod-current.jp-mod-dirty").count() == 0, f"{nb.name} modified"
        assert (lab_server.root / nb.name).read_text() == lab.learner_copy(nb)


@pytest.mark.slow
@pytest.mark.browser
def test_notebook_06_in_jupyterlab(page, lab_server: Lab) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    _open(page, lab_server, "06_recolour_experiments.ipynb")
    assert page.locator(".jp-Toolbar-kernelName").first.inner_text().strip() == "Python 3 (facesegm)"
    assert page.locator(".lm-TabBar-tab.lm-mod-current.jp-mod-dirty").count() == 0, (
        "opening marked it modified"
    )
    _run_all(page, lab_server)
    assert _problems(page) == []
    ui = page.locator(".facesegm-recolor")
    assert ui.count() == 1, "the recolour widget is not shown"
    ui.scroll_into_view_if_needed()
    assert ui.locator("img.widget-image").count() == 2
    assert (
        ui.get_by_text("before", exact=True).count() == 1 and ui.get_by_text("after", exact=True).count() == 1
    )
    for img in ui.locator("img.widget-image").all():  # shown at the photo's own size, not stretched
        natural_w, shown_w, natural_h, shown_h = img.evaluate(
            "e => [e.naturalWidth, e.clientWidth, e.naturalHeight, e.clientHeight]"
        )
        assert (shown_w, shown_h) == (natural_w, natural_h)

    ui.screenshot(path=str(SHOTS / "widget.png"))  # as a learner first sees it (README's picture)
    handle = ui.locator(".widget-slider .noUi-handle").first

    def drag() -> None:
        box = handle.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] - 60, box["y"] + box["height"] / 2, steps=8)
        page.mouse.up()

    colour = ui.locator(".widget-text input[type=text]").first

    def type_colour() -> None:
        colour.fill("#2060d0")
        colour.press("Enter")

    actions = {
        "slider dragged": drag,
        "colour + Enter": type_colour,
        "part chosen": lambda: ui.locator(".widget-dropdown select").select_option("lips"),
        "method toggled": lambda: ui.locator('.widget-toggle-buttons button:has-text("hsv")').click(),
        "strength from the keyboard": lambda: (handle.focus(), page.keyboard.press("ArrowRight")),
        "reset": lambda: ui.locator('button:has-text("reset")').click(),
    }
    for what, action in actions.items():
        after, before = _changes(page, ui, action)
        assert after > 0, f"{what}: the after-image did not change"
        assert before == 0, f"{what}: the before-image changed"
    ui.screenshot(path=str(SHOTS / "widget_after_edits.png"))

    src = ui.locator("img.widget-image").nth(1).get_attribute("src")
    colour.fill("notacolour")
    colour.press("Enter")
    page.wait_for_selector(".facesegm-recolor :text('not a colour')")
    assert ui.locator("img.widget-image").nth(1).get_attribute("src") == src
    ui.screenshot(path=str(SHOTS / "widget_invalid_colour.png"))
    assert _problems(page) == []
    page.screenshot(path=str(SHOTS / "06_recolour_experiments.png"))


@pytest.mark.slow
@pytest.mark.browser
def test_notebook_01_figures_render(page, lab_server: Lab) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    _open(page, lab_server, "01_data_exploration.ipynb")
    assert page.locator(".lm-TabBar-tab.lm-mod-current.jp-mod-dirty").count() == 0, (
        "opening marked it modified"
    )
    _run_all(page, lab_server)
    assert _problems(page) == []
    images = page.locator(".jp-OutputArea-output img")
    assert images.count() >= 3
    sizes = images.evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    assert all(w > 50 and h > 50 for w, h in sizes), sizes  # decoded images, not broken ones
    page.screenshot(path=str(SHOTS / "01_data_exploration.png"))


def test_without_a_browser_skip_says_how_and_ci_fails(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        _browser_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        _browser_or_skip()


def test_screenshot_folder_is_not_tracked() -> None:
    assert (
        shutil.which("git") is None
        or subprocess.run(
            ["git", "check-ignore", "-q", "outputs/lab_screenshots/widget.png"],
            cwd=course.REPO_ROOT,
            check=False,
        ).returncode
        == 0
    )
