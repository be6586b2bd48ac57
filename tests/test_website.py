"""The course site (``make site``): pages, math, folding, offline, and the built site in a real browser.

The slow tests build the site from the session's ``quick_course`` (the notebooks tests/test_notebooks.py
executes; nothing runs twice), or from ``FACESEGM_SITE_COURSE`` when set (a folder holding a finished
quick-profile run, to iterate on these tests without re-running the course). The browser test serves
the site on 127.0.0.1 and drives Debian's Chromium through Playwright, as tests/test_lab.py does; it
saves the index's screenshot as ``docs/site.png`` (the README's picture).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup
from test_lab import CHROMIUM, LAUNCH_ARGS, _browser_or_skip

from facesegm_utils import course, exercises, website
from facesegm_utils.cli import main
from facesegm_utils.website import NotebookRun

SCREENSHOT = course.REPO_ROOT / "docs" / "site.png"


def _run(i: int, title: str, seconds: float = 12.0) -> NotebookRun:
    return NotebookRun(
        path=Path(f"{i:02d}_nb.ipynb"),
        title=title,
        sections=("1. Data", "Takeaways", "Exercises"),
        seconds=seconds,
        started="2026-12-06T19:15:01.5",
        profile="quick",
        exercises=2,
    )


def test_index_maps_every_notebook_with_its_time_profile_and_results() -> None:
    runs = [_run(i, f"0{i} · Title {i}", 10.0 * i) for i in range(1, 8)]  # seven: nothing hard-codes six
    summary = {
        "profile": "quick",
        "overrides": {"EPOCHS": 3},
        "metrics": {
            "04_training": {"test_miou": 0.7281, "epochs_run": 3},
            "05_evaluation": {"mean_f1_fg": 0.5, "oracle_bg_skin_hair_accuracy": 0.9},
        },
    }
    md = website.index_markdown(runs, summary, ["figures/06_gallery.png"])
    for r in runs:
        assert f"[{r.title}]({r.page})" in md
    assert "| 30 s |" in md and "| 70 s |" in md  # time in this run, per notebook
    assert "2026-12-06 19:15 UTC" in md and "**quick** profile" in md and "`EPOCHS=3`" in md
    assert "test miou | 0.728" in md and "mean f1 fg | 0.500" in md
    assert "epochs run" not in md and "oracle" not in md
    assert "![06 gallery](figures/06_gallery.png)" in md
    assert "Data" in md and "Takeaways" not in md.split("## Course map")[1].split("## Key")[0]


def test_latex_becomes_mathml_outside_code() -> None:
    md = "Dice $2TP / (2TP + FP + FN)$ and `$HOME` and\n\n$$\\bar L' = L$$\n\n```\ncost = $x$\n```"
    out = website.latex_to_mathml(md)
    assert out.count("<math") == 2 and 'display="block"' in out and "`$HOME`" in out and "cost = $x$" in out
    assert "$" not in out.replace("`$HOME`", "").replace("cost = $x$", "")


def test_fold_page_folds_solutions_and_long_outputs_and_drops_cdn_scripts() -> None:
    long = "\n".join(f"line {i}" for i in range(40))
    page = (
        '<script src="https://cdnjs.example/mathjax.js"> </script><script type="text/x-mathjax-config">x</script>'
        '<script type="module">import m from "https://cdn.example/m.js"</script><script src="">x</script>'
        '<link rel="stylesheet" href="//fonts.example/css"><script>var local = 1;</script>'
        '<div class="jp-Cell jp-CodeCell celltag_solution"><div class="jp-Cell celltag_solution">'
        "<pre>def f(): return 1</pre></div></div>"
        '<div class="jp-Cell jp-CodeCell celltag_exercise"><pre>def f(): raise NotImplementedError</pre></div>'
        f'<div class="jp-OutputArea-output"><pre>{long}</pre></div>'
        '<div class="jp-OutputArea-output"><pre>short</pre></div>'
    )
    out = website.fold_page(page)
    assert "http" not in out and "mathjax" not in out and "//fonts" not in out and "var local = 1;" in out
    assert re.search(
        r'<details class="solution"><summary>[^<]+</summary><div class="[^"]*celltag_solution', out
    )
    assert out.count("<details") == 2 and "Output: 40 lines" in out
    assert '<details class="long-output"><summary>Output: 40 lines (click to show)</summary><pre>' in out


def test_site_without_an_executed_course_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["site", "--course", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no executed course" in err and "make course" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [], "nothing is written without a course"


def test_read_run_takes_time_and_profile_from_papermill(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 09 · A title\n\n## 1. First\n\n## Exercises"),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": [exercises.EXERCISE_TAG]}),
    ]
    nb.metadata["papermill"] = {
        "duration": 3.5,
        "start_time": "2026-01-02T03:04:05",
        "parameters": {"PROFILE": "full"},
    }
    path = tmp_path / "09_a.ipynb"
    nbformat.write(nb, path)
    run = website.read_run(path)
    assert (run.title, run.sections, run.seconds, run.profile, run.exercises) == (
        "09 · A title",
        ("First", "Exercises"),
        3.5,
        "full",
        1,
    )
    assert "2026-01-02 03:04 UTC" in website.run_info(run) and "<strong>full</strong>" in website.run_info(
        run
    )


def test_make_site_never_executes_and_says_how_to_open() -> None:
    makefile = (course.REPO_ROOT / "Makefile").read_text()
    rule = re.search(r"^site:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert rule and "facesegm site" in rule.group(1) and "course" not in rule.group(0).split("\n")[0]
    config = (course.REPO_ROOT / "website" / "mkdocs.yml").read_text()
    assert re.search(r"^\s+execute: false", config, flags=re.MULTILINE)
    assert re.search(r"^\s+font: false", config, flags=re.MULTILINE)


# --------------------------------------------------------------------------- the built site


@pytest.fixture(scope="module")
def built_site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site of the session's quick course (or of ``FACESEGM_SITE_COURSE``), built once."""
    prepared = os.environ.get("FACESEGM_SITE_COURSE")
    out = Path(prepared) if prepared else Path(request.getfixturevalue("quick_course")["out_dir"])
    return website.build_site(out, tmp_path_factory.mktemp("site") / "site")


@pytest.mark.slow
def test_built_site_has_every_notebook_and_nothing_remote(built_site: Path) -> None:
    names = sorted(p.name for p in built_site.glob("[0-9][0-9]_*.html"))
    assert [n[:-5] for n in names] == [p.stem for p in course.list_notebooks()]
    for page in [built_site / "index.html", *(built_site / n for n in names)]:
        text = page.read_text()
        remote = re.findall(r'<(?:script|link|img|iframe)[^>]+(?:src|href)="((?:https?:)?//[^"]*)"', text)
        assert not remote, f"{page.name} loads {remote}"
    for name in names:
        text = (built_site / name).read_text()
        assert 'class="run-info"' in text and '<details class="solution">' in text, name
        assert "celltag_solution" in text and "✗" in text and "✓" in text, f"{name}: stub ✗ and solution ✓"
        for pre in BeautifulSoup(text, "html.parser").select(".jp-OutputArea-output pre"):
            long = pre.get_text().count("\n") + 1 > website.LONG_OUTPUT_LINES
            folded = pre.find_parent("details", class_="long-output") is not None
            assert long == folded, f"{name}: a {'long' if long else 'short'} output is {'not ' * long}folded"


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.handle_error = lambda request, address: None  # a page left mid-download resets its socket
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="module")
def site_page(built_site: Path) -> Iterator[tuple[object, str, list[str], list[str]]]:
    """A Chromium page, the site's base URL, every request URL and every console error seen."""
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    server, base = _serve(built_site)
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
        yield page, base, requests, errors
        browser.close()
    server.shutdown()


def _internal_links(page, base: str) -> set[str]:
    hrefs = page.locator("a[href]").evaluate_all("els => els.map(e => e.href)")
    return {h.split("#")[0] for h in hrefs if h.startswith(base)}


def _broken_images(page) -> list[str]:
    """Sources (cut short) of the page's images that did not load."""
    images = page.locator("img").evaluate_all(
        "els => els.map(e => [e.currentSrc.slice(0, 80), e.complete && e.naturalWidth > 0])"
    )
    return [src for src, ok in images if not ok]


@pytest.mark.slow
@pytest.mark.browser
def test_site_in_a_browser(site_page, built_site: Path) -> None:
    page, base, requests, errors = site_page
    notebooks = [p.stem + ".html" for p in course.list_notebooks()]
    page.goto(base + "index.html")
    page.wait_for_selector("table a[href$='.html']")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert not _broken_images(page), _broken_images(page)

    visited, links = ["index.html"], _internal_links(page, base)  # prev/next: the course in order
    while page.locator("a.md-footer__link--next").count():
        page.locator("a.md-footer__link--next").click()
        page.wait_for_load_state("load")
        visited.append(page.url.removeprefix(base).split("#")[0])
        previous = page.locator("a.md-footer__link--prev").get_attribute("href")
        assert urllib.parse.urljoin(page.url, previous) == base + visited[-2], f"{visited[-1]}: prev link"
        links |= _internal_links(page, base)
        assert page.locator("img").count() and not _broken_images(page), f"{page.url}: broken images"
    assert visited == ["index.html", *notebooks]

    for url in sorted(links):  # every internal link resolves
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200, url
        assert (built_site / urllib.parse.unquote(url.removeprefix(base))).exists() or url == base

    page.goto(base + "04_training.html")  # a folded solution opens on click
    solution = page.locator("details.solution").first
    assert solution.get_attribute("open") is None and not solution.locator("pre").first.is_visible()
    solution.locator("summary").click()
    assert solution.get_attribute("open") is not None and solution.locator("pre").first.is_visible()

    page.goto(base + "index.html")  # search, offline: lunr in a worker over search_index.json
    page.locator("label.md-search__icon, .md-search__input").first.click()
    page.wait_for_function(  # the worker has built its index ("Initializing search" is gone)
        "() => !/Initializing/.test(document.querySelector('.md-search-result__meta')?.textContent ?? 'x')",
        timeout=90_000,
    )
    page.locator("input.md-search__input").press_sequentially("Dice", delay=50)  # keys, as a reader types
    page.wait_for_selector(".md-search-result__item")
    found = page.locator(".md-search-result__item a").evaluate_all("els => els.map(e => e.href)")
    assert any("04_training.html" in h for h in found), found

    assert not errors, errors
    outside = [u for u in requests if not u.startswith(base) and not u.startswith(("data:", "blob:"))]
    assert not outside, f"requests left 127.0.0.1: {outside[:5]}"
