"""JupyterLab for a learner: working copies of the notebooks, and the ``jupyter lab`` command line.

``make lab`` runs ``python -m facesegm_utils.lab``. It copies every course notebook from
``notebooks/`` into ``lab/`` (a sibling of ``notebooks/`` and ``outputs/``, ignored by git) the
first time it is missing, and never overwrites a copy that exists, so the learner's outputs and
edits live in ``lab/`` and the tracked notebooks stay clean. A copy is the committed notebook less
its exercises' reference solutions (cells tagged ``solution``): the learner gets the stubs. Because ``lab/`` sits next to
``notebooks/``, the notebooks' default paths (``OUT_DIR = "../outputs"``) mean the same from both.
Delete ``lab/NAME.ipynb`` to get a fresh copy of one notebook.

Nothing runs at import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from facesegm_utils.course import NOTEBOOK_DIR, REPO_ROOT, list_notebooks
from facesegm_utils.exercises import strip_solutions

#: where ``make lab`` keeps the learner's working copies
LAB_DIR = REPO_ROOT / "lab"


def learner_copy(path: str | os.PathLike[str]) -> str:
    """The text of a learner's copy of a notebook: the committed file without its solution cells
    (byte for byte the committed file when it has none)."""
    import nbformat

    return nbformat.writes(strip_solutions(nbformat.read(path, as_version=4))) + "\n"


def working_copies(
    src: str | os.PathLike[str] = NOTEBOOK_DIR, dst: str | os.PathLike[str] = LAB_DIR
) -> tuple[list[Path], list[Path]]:
    """Copy each course notebook of ``src`` into ``dst`` unless a copy is there already
    (:func:`learner_copy`: without the exercises' reference solutions).

    Returns ``(created, kept)``: the copies made now and the existing ones left untouched.
    """
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    kept: list[Path] = []
    for nb in list_notebooks(src):
        target = dst / nb.name
        if target.exists():
            kept.append(target)
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(learner_copy(nb), encoding="utf-8")
        os.replace(tmp, target)  # atomic: a half-written copy is never taken for a kept one
        created.append(target)
    return created, kept


def running_as_root() -> bool:
    """Whether this process runs as root (``jupyter lab`` then needs ``--allow-root``)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def lab_command(
    root_dir: str | os.PathLike[str],
    *,
    port: int | None = None,
    token: str | None = None,
    ip: str | None = None,
    as_root: bool | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``jupyter lab`` argv of this environment serving ``root_dir``; ``--allow-root`` only as root."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={Path(root_dir)}"]
    if port is not None:
        cmd.append(f"--port={int(port)}")
    if ip is not None:
        cmd.append(f"--ip={ip}")
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    if running_as_root() if as_root is None else as_root:
        cmd.append("--allow-root")
    return [*cmd, *extra]


def main(argv: Sequence[str] | None = None) -> int:
    """``make lab``: make the working copies, say where they are, and run JupyterLab on them."""
    args = list(sys.argv[1:] if argv is None else argv)
    created, kept = working_copies()
    rel = LAB_DIR.relative_to(REPO_ROOT)
    if created:
        print(f"made working copies of {len(created)} notebook(s) in {rel}/ (from notebooks/, first use)")
    if kept:
        print(f"kept your {len(kept)} existing working copies in {rel}/ (delete one to start it afresh)")
    print(
        f"JupyterLab opens {rel}/: your outputs and edits stay there; notebooks/ stays as committed",
        flush=True,
    )
    if running_as_root():
        print("running as root (e.g. in a container): passing --allow-root to jupyter lab", flush=True)
    return subprocess.call(lab_command(LAB_DIR, extra=args))


if __name__ == "__main__":
    raise SystemExit(main())
