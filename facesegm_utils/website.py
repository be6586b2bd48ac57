"""The course as a static site: the notebooks ``make course`` executed, rendered, never re-executed.

``make site`` runs ``facesegm site --course outputs``. It reads the executed notebooks in
``OUT/notebooks/`` (whatever ``NN_*.ipynb`` are there) and ``OUT/course_summary.json``, writes the
site's sources into a temporary folder (an index page with the course map, the profile and the key
results; each notebook with a line saying when and on which profile it ran; LaTeX turned into MathML,
which browsers draw without a script) and builds them with mkdocs-material + mkdocs-jupyter
(``website/mkdocs.yml``) into ``OUT/site/``. The page hook :func:`on_page_content` folds away the
exercises' reference solutions and long outputs (``<details>``) and drops every script that would
load from a CDN, so the site works offline, search included.

Nothing runs at import.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facesegm_utils.course import REPO_ROOT, list_notebooks, load_profiles
from facesegm_utils.exercises import EXERCISE_TAG, SOLUTION_TAG
from facesegm_utils.fileio import FacesegmError

#: the static part of the mkdocs configuration (theme, plugins, offline settings, the page hook)
SITE_CONFIG = REPO_ROOT / "website" / "mkdocs.yml"
#: text outputs longer than this many lines are folded away on the site
LONG_OUTPUT_LINES = 15
#: metrics shown as key results: the test-set scores notebooks 04 and 05 record
KEY_METRIC = re.compile(
    r"^(test_miou|test_pixel_accuracy|mean_iou|mean_iou_no_bg|mean_f1_fg|pixel_accuracy)$"
)


@dataclass(frozen=True)
class NotebookRun:
    """One executed notebook as the site shows it."""

    path: Path
    title: str
    sections: tuple[str, ...]
    seconds: float | None
    started: str | None
    profile: str | None
    exercises: int

    @property
    def page(self) -> str:
        return self.path.name


def _tags(cell: Any) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _headings(nb: Any, level: int) -> list[str]:
    marks = "#" * level
    found = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found += re.findall(rf"^{marks} +(.+?)\s*$", cell.source, flags=re.MULTILINE)
    return found


def read_run(path: Path, seconds: dict[str, float] | None = None) -> NotebookRun:
    """Title, sections, time taken and profile of an executed notebook (papermill's metadata)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    pm = nb.metadata.get("papermill", {})
    titles = _headings(nb, 1)
    duration = pm.get("duration") if pm.get("duration") is not None else (seconds or {}).get(path.stem)
    return NotebookRun(
        path=path,
        title=titles[0] if titles else path.stem,
        sections=tuple(re.sub(r"^\d+\.\s*", "", h) for h in _headings(nb, 2)),
        seconds=float(duration) if duration is not None else None,
        started=pm.get("start_time"),
        profile=pm.get("parameters", {}).get("PROFILE"),
        exercises=sum(EXERCISE_TAG in _tags(c) for c in nb.cells),
    )


def course_runs(out_dir: str | os.PathLike[str]) -> tuple[list[NotebookRun], dict[str, Any]]:
    """The executed notebooks of a course output, in order, and its summary; a clear error if none."""
    out = Path(out_dir)
    executed = out / "notebooks"
    summary_file = out / "course_summary.json"
    if not executed.is_dir() or not summary_file.is_file() or not list_notebooks(executed):
        raise FacesegmError(
            f"no executed course in {out}: expected notebooks/NN_*.ipynb and course_summary.json there "
            "(run `make course` first; the site shows those notebooks as they ran)"
        )
    summary = json.loads(summary_file.read_text())
    return [read_run(p, summary.get("seconds")) for p in list_notebooks(executed)], summary


def when(started: str | None) -> str:
    """Papermill's UTC start time as ``2026-12-06 19:15 UTC``."""
    return f"{started[:10]} {started[11:16]} UTC" if started else "at an unknown time"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _profile_line(summary: dict[str, Any]) -> str:
    """``**quick** profile (its description; the --set overrides)`` for the index."""
    name = summary.get("profile", "?")
    notes = [load_profiles().get(name, {}).get("description", "").rstrip(".")]
    overrides = summary.get("overrides") or {}
    if overrides:
        notes.append("overridden: " + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in overrides.items()))
    shown = "; ".join(n for n in notes if n)
    return f"**{name}** profile" + (f" ({shown})" if shown else "")


def key_results(summary: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(notebook, metric, value) of the recorded test scores (:data:`KEY_METRIC`)."""
    rows = []
    for notebook, values in summary.get("metrics", {}).items():
        for name, value in values.items():
            if KEY_METRIC.search(name) and isinstance(value, int | float) and not isinstance(value, bool):
                rows.append((notebook, name, float(value)))
    return rows


def index_markdown(runs: list[NotebookRun], summary: dict[str, Any], gallery: list[str]) -> str:
    """The index page: the course map, the profile it was built from, the key results, the gallery."""
    started = min((r.started for r in runs if r.started), default=None)
    lines = [
        "# facesegm: face parsing with a U-Net",
        "",
        "A course in notebooks: from raw CelebAMask-HQ part masks to a trained U-Net, honest scores and",
        "recoloured lips and hair. Every page below is a notebook **as `make course` executed it**,",
        f"on {when(started)} with the {_profile_line(summary)}; nothing was re-run to build this site.",
        "",
        "## Course map",
        "",
        "| notebook | what it teaches | time in this run | exercises |",
        "|---|---|---:|---:|",
    ]
    for r in runs:
        teaches = " · ".join(s for s in r.sections if s not in ("Summary", "Takeaways", "Exercises"))
        lines.append(
            f"| [{_cell(r.title)}]({r.page}) | {_cell(teaches)} | {_minutes(r.seconds)} | {r.exercises} |"
        )
    total = sum(r.seconds or 0 for r in runs)
    lines += ["", f"The whole course took {_minutes(total)} in this run.", ""]
    lines += _results_markdown(summary, gallery)
    lines += [
        "## Run it yourself",
        "",
        "```bash",
        "make course   # executes every notebook into outputs/",
        "make lab      # JupyterLab on your own copies: the exercises come with checks, not solutions",
        "make site     # this site, from outputs/ (python -m http.server -d outputs/site)",
        "```",
        "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _results_markdown(summary: dict[str, Any], gallery: list[str]) -> list[str]:
    lines = ["## Key results", ""]
    rows = key_results(summary)
    if rows:
        lines += ["| notebook | metric | value |", "|---|---|---:|"]
        lines += [f"| {nb} | {name.replace('_', ' ')} | {value:.3f} |" for nb, name, value in rows]
    else:
        lines.append("No metrics were recorded in this run.")
    if summary.get("profile") == "quick":
        lines += [
            "",
            "!!! note",
            "    The quick profile trains a small U-Net for minutes on **synthetic** faces: these numbers show",
            "    that the pipeline learns and are not comparable with published CelebAMask-HQ results.",
        ]
    lines.append("")
    for name in gallery:
        lines += [f"![{Path(name).stem.replace('_', ' ')}]({name})", ""]
    return lines


# -------------------------------------------------------------------------------------- pages

_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", flags=re.DOTALL)
_MATH = re.compile(r"\$\$(.+?)\$\$|\$([^$\n]+?)\$", flags=re.DOTALL)


def latex_to_mathml(markdown: str) -> str:
    """``$...$`` and ``$$...$$`` outside code spans replaced by MathML (drawn by the browser, no script)."""
    from latex2mathml.converter import convert

    def one(m: re.Match[str]) -> str:
        block = m.group(1) is not None
        return convert((m.group(1) if block else m.group(2)).strip(), display="block" if block else "inline")

    parts = _CODE.split(markdown)
    return "".join(p if i % 2 else _MATH.sub(one, p) for i, p in enumerate(parts))


def run_info(run: NotebookRun) -> str:
    """The line each page opens with: when, on which profile, how long."""
    took = f" in {_minutes(run.seconds)}" if run.seconds is not None else ""
    return (
        f'<p class="run-info">Executed by <code>make course</code> on {when(run.started)} with the '
        f"<strong>{html.escape(run.profile or '?')}</strong> profile{took}; shown as it ran.</p>"
    )


def page_notebook(run: NotebookRun) -> Any:
    """The executed notebook as its page shows it: the run line after the title, LaTeX as MathML."""
    import nbformat

    nb = nbformat.read(run.path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = latex_to_mathml(cell.source)
    first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    info = nbformat.v4.new_markdown_cell(run_info(run))
    if nb.nbformat_minor < 5:
        info.pop("id", None)
    nb.cells.insert(first_md + 1, info)
    return nb


def prepare_docs(out_dir: Path, docs: Path) -> list[dict[str, str]]:
    """Write the site's sources (index, notebooks, gallery, stylesheet) into ``docs``; return the nav."""
    import nbformat

    runs, summary = course_runs(out_dir)
    gallery = []
    for fig in sorted((out_dir / "figures").glob("*gallery*.png")):
        (docs / "figures").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fig, docs / "figures" / fig.name)
        gallery.append(f"figures/{fig.name}")
    (docs / "index.md").write_text(index_markdown(runs, summary, gallery), encoding="utf-8")
    for run in runs:
        nb = page_notebook(run)
        nb.metadata.pop("widgets", None)  # widget state would pull the widget manager from a CDN
        (docs / run.page).write_text(nbformat.writes(nb), encoding="utf-8")
    shutil.copytree(SITE_CONFIG.parent / "assets", docs / "assets")
    return [{"Course map": "index.md"}] + [{r.title: r.page} for r in runs]


# ------------------------------------------------------------------------- the page hook


def _is_remote(url: str | None) -> bool:
    return url is not None and (url == "" or re.match(r"^(https?:)?//", url.strip()) is not None)


def fold_page(page_html: str, long_lines: int = LONG_OUTPUT_LINES) -> str:
    """Reference solutions and long text outputs folded into ``<details>``; CDN scripts and links dropped."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page_html, "html.parser")
    for script in soup.find_all("script"):
        text = script.string or ""
        if (
            _is_remote(script.get("src"))
            or "mathjax" in script.get("type", "")
            or re.search(r"https?://", text)
        ):
            script.decompose()
    for link in soup.find_all("link"):
        if _is_remote(link.get("href")):
            link.decompose()
    solution = f"celltag_{SOLUTION_TAG}"
    for cell in soup.select(f"div.jp-Cell.{solution}"):
        if cell.find_parent("div", class_=solution) is None:  # mkdocs-jupyter nests two such divs
            _wrap(soup, cell, "solution", "Reference solution (click to open)")
    for pre in soup.select(".jp-OutputArea-output pre"):
        n = pre.get_text().count("\n") + 1
        if n > long_lines:
            _wrap(soup, pre, "long-output", f"Output: {n} lines (click to show)")
    return str(soup)


def _wrap(soup: Any, element: Any, css: str, label: str) -> None:
    details = soup.new_tag("details", attrs={"class": css})
    summary = soup.new_tag("summary")
    summary.string = label
    element.wrap(details)
    details.insert(0, summary)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook (``website/hooks.py``): fold solutions and long outputs, drop CDN scripts."""
    return fold_page(html) if page.file.src_path.endswith(".ipynb") else html


# -------------------------------------------------------------------------------------- build


def build_site(out_dir: str | os.PathLike[str], site_dir: str | os.PathLike[str] | None = None) -> Path:
    """Build the site of the course executed in ``out_dir`` into ``site_dir`` (``OUT/site``), atomically."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    out = Path(out_dir).resolve()
    site = Path(site_dir).resolve() if site_dir else out / "site"
    with tempfile.TemporaryDirectory(prefix="facesegm-site-") as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        nav = prepare_docs(out, docs)  # a clear error here, before anything is written next to the site
        site.parent.mkdir(parents=True, exist_ok=True)
        built = Path(tempfile.mkdtemp(prefix=f".{site.name}-", dir=site.parent))
        config = load_config(str(SITE_CONFIG), docs_dir=str(docs), site_dir=str(built), nav=nav, strict=True)
        try:
            build(config)
        except BaseException:
            shutil.rmtree(built, ignore_errors=True)
            raise
    old = site.with_name(f".{site.name}.old")
    if site.exists():
        os.replace(site, old)
    os.replace(built, site)
    shutil.rmtree(old, ignore_errors=True)
    return site


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facesegm site``."""
    parser.add_argument(
        "--course", default="outputs", help="output folder of `make course` (default: outputs)"
    )
    parser.add_argument("--out", default=None, help="where the site goes (default: COURSE/site)")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm site`` and say how to open the site."""
    site = build_site(args.course, args.out)
    shown = os.path.relpath(site) if not os.path.relpath(site).startswith("..") else str(site)
    print(f"site written to {shown}/ ({len(list(site.glob('*.html')))} pages)")
    print(
        f"open it: python -m http.server -d {shown}   then http://127.0.0.1:8000/ (offline, search included)"
    )
    return 0
