"""Exercises: honest checks (each passes its reference solution and fails its stub as shipped),
2-3 of them at the end of every notebook, and a ``check`` that never raises.

The exercise cells are run here as the notebook runs them, without a kernel: the notebook's own
imports, then the Exercises section's cells in order, with ``exercises.check`` recorded.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from facesegm_utils import course, exercises, metrics

NOTEBOOKS = course.list_notebooks()
HEADING = "## Exercises"


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _section(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The cells from the ``## Exercises`` heading to the end."""
    starts = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith(HEADING)]
    assert len(starts) == 1, f"expected one '{HEADING}' section, found {len(starts)}"
    return nb.cells[starts[0] :]


def _checked(source: str) -> list[str]:
    """Exercise names passed to ``exercises.check("NAME", fn)`` in a cell."""
    return [
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and ast.unparse(node.func) == "exercises.check"
        and isinstance(node.args[0], ast.Constant)
    ]


def _notebook_imports(nb: nbformat.NotebookNode) -> str:
    """The notebook's top-level imports (before its Exercises section) of names the section uses."""
    section = _section(nb)
    code = [ast.parse(c.source) for c in section if c.cell_type == "code"]
    used = {n.id for tree in code for n in ast.walk(tree) if isinstance(n, ast.Name)}
    lines = []
    for cell in nb.cells[: nb.cells.index(section[0])]:
        if cell.cell_type != "code":
            continue
        src = "\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!")))
        for node in ast.parse(src).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                node.names = [a for a in node.names if (a.asname or a.name.split(".")[0]) in used]
                lines += [ast.unparse(node)] if node.names else []
    return "\n".join(lines)


def run_section(nb: nbformat.NotebookNode, with_solutions: bool) -> dict[str, exercises.Outcome]:
    """Each exercise's last outcome when the section runs with (or without) its solution cells."""
    outcomes: dict[str, exercises.Outcome] = {}

    class Recorder:
        def __getattr__(self, name: str) -> object:
            return getattr(exercises, name)

        def check(self, name: str, fn: object) -> None:
            outcomes[name] = exercises.run_check(name, fn)

    ns: dict[str, object] = {"__name__": "exercise_cells"}
    exec(_notebook_imports(nb), ns)
    for cell in _section(nb):
        if cell.cell_type != "code" or (exercises.SOLUTION_TAG in _tags(cell) and not with_solutions):
            continue
        exec(cell.source, ns)
        ns["exercises"] = Recorder()  # from the section's own import on
    return outcomes


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_ends_with_two_or_three_exercises(path: Path) -> None:
    """Decided: every course notebook has exercises (a notebook without any fails here)."""
    nb = nbformat.read(path, as_version=4)
    section = _section(nb)
    headings = [c for c in nb.cells if c.cell_type == "markdown" and re.match(r"^## ", c.source)]
    assert headings[-1].source.startswith(HEADING), f"{path.name}: the Exercises section must come last"
    stubs = [_checked(c.source) for c in section if exercises.EXERCISE_TAG in _tags(c)]
    solutions = [_checked(c.source) for c in section if exercises.SOLUTION_TAG in _tags(c)]
    assert 2 <= len(stubs) <= 3, f"{path.name}: {len(stubs)} exercises"
    assert all(len(names) == 1 for names in stubs + solutions), "one check call per exercise cell"
    assert solutions == stubs, f"{path.name}: each exercise needs one solution cell checking the same name"
    assert all(name.startswith(path.stem[:2] + ".") and name in exercises.CHECKS for (name,) in stubs)
    tagged = [c for c in nb.cells if {exercises.EXERCISE_TAG, exercises.SOLUTION_TAG} & set(_tags(c))]
    assert all(c in section for c in tagged), "exercise and solution cells belong to the Exercises section"


def test_every_check_belongs_to_one_notebook() -> None:
    sections = [_section(nbformat.read(p, as_version=4)) for p in NOTEBOOKS]
    used = [n for section in sections for c in section if c.cell_type == "code" for n in _checked(c.source)]
    assert set(used) == set(exercises.CHECKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_checks_pass_the_reference_solutions(path: Path) -> None:
    outcomes = run_section(nbformat.read(path, as_version=4), with_solutions=True)
    assert outcomes and all(o.passed for o in outcomes.values()), [o.line for o in outcomes.values()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_checks_fail_the_stubs_as_shipped(path: Path) -> None:
    outcomes = run_section(nbformat.read(path, as_version=4), with_solutions=False)
    assert outcomes and not any(o.passed for o in outcomes.values()), [o.line for o in outcomes.values()]
    assert all("not done yet" in o.message for o in outcomes.values())


def test_check_prints_one_line_and_never_raises(capsys) -> None:
    def broken(*args: object) -> None:
        raise ZeroDivisionError("boom")

    assert exercises.check("05.iou_f1", broken) is None
    assert capsys.readouterr().out == "✗ 05.iou_f1: your function raised ZeroDivisionError: boom\n"
    for name, fn in (("01.presence", lambda maps: None), ("01.presence", "not a function"), ("nope", len)):
        outcome = exercises.run_check(name, fn)
        assert not outcome.passed and outcome.line.startswith("✗")
    assert "None" in exercises.run_check("01.presence", lambda maps: None).message


def test_hints_say_what_was_expected_and_name_the_usual_mistake() -> None:
    mirrored = exercises.run_check("02.flip", lambda m: m[:, ::-1])
    assert "swap l_eye/r_eye" in mirrored.message
    per_image = exercises.run_check(
        "05.dataset_miou",
        lambda ms: metrics.per_batch_mean_iou_from_matrices(ms, 2),
    )
    assert "per-batch" in per_image.message and "expected" in per_image.message
    wrong = exercises.run_check("03.conv_params", lambda k, c_in, c_out: k * k * c_in * c_out)
    assert "biases" in wrong.message
    off_by_one = exercises.run_check("03.receptive_field", lambda layers: len(layers) * 2)
    assert "expected 3.0000, got 2.0000" in off_by_one.message


def test_lab_helpers_round_trip() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 5, 3)).astype(np.uint8)
    lab = exercises.to_lab(rgb)
    assert lab[..., 0].min() >= 0 and lab[..., 0].max() <= 100
    assert np.abs(exercises.to_rgb(lab).astype(int) - rgb).max() <= 1


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_course_run_prints_a_cross_for_each_stub_and_a_tick_for_each_solution(
    quick_course: dict, path: Path
) -> None:
    """The profiles run the notebooks with the stubs: each check prints ✗, and the run goes on."""
    executed = nbformat.read(Path(quick_course["out_dir"]) / "notebooks" / path.name, as_version=4)

    def printed(tag: str) -> list[str]:
        cells = [c for c in _section(executed) if tag in _tags(c)]
        return ["".join(o.get("text", "") for o in c.outputs if o.get("name") == "stdout") for c in cells]

    assert all(out.startswith("✗ ") and "not done yet" in out for out in printed(exercises.EXERCISE_TAG))
    assert all(out.startswith("✓ ") for out in printed(exercises.SOLUTION_TAG))
    assert len(printed(exercises.SOLUTION_TAG)) >= 2
