"""The course runner: execute ``notebooks/NN_*.ipynb`` in order with papermill, one profile at a time.

Profiles live in ``notebooks/profiles.json``. Every notebook receives the profile's ``common``
parameters plus its own, and ``RAW_DIR``/``OUT_DIR`` from the command line. Notebooks record their
key numbers with :func:`record_metrics`; the runner gathers them into a summary at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facesegm_utils.fileio import FacesegmError, atomic_write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PROFILES_FILE = NOTEBOOK_DIR / "profiles.json"
_NOTEBOOK_RE = re.compile(r"^\d\d_[A-Za-z0-9_]+\.ipynb$")
#: parameters the runner fills in itself, so every notebook declares them too
RUNNER_PARAMETERS = ("RAW_DIR", "OUT_DIR")


@dataclass(frozen=True)
class CoursePaths:
    """Where the course writes things under one output folder."""

    out: Path

    @property
    def prepared(self) -> Path:
        """The prepared dataset written by notebook 02."""
        return self.out / "prepared"

    @property
    def run(self) -> Path:
        """The training run of notebook 04 (``model.keras``, ``history.csv``, ...)."""
        return self.out / "run"

    @property
    def model(self) -> Path:
        """The trained model notebooks 05 and 06 use."""
        return self.run / "model.keras"

    @property
    def figures(self) -> Path:
        return self.out / "figures"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics"

    @property
    def executed(self) -> Path:
        """Executed copies of the notebooks."""
        return self.out / "notebooks"


def paths(out_dir: str | os.PathLike[str]) -> CoursePaths:
    """The course's output layout under ``out_dir`` (folders are created on demand)."""
    return CoursePaths(Path(out_dir))


def save_figure(fig: Any, name: str, out_dir: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``OUT/figures/{name}.png`` (atomically) and return the path."""
    import io

    from facesegm_utils.fileio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(paths(out_dir).figures / f"{name}.png", buf.getvalue())


def record_metrics(out_dir: str | os.PathLike[str], notebook: str, metrics: dict[str, Any]) -> Path:
    """Record a notebook's key numbers in ``OUT/metrics/{notebook}.json`` for the course summary."""
    clean = {
        k: (float(v) if hasattr(v, "__float__") and not isinstance(v, (bool, int, str)) else v)
        for k, v in metrics.items()
    }
    return atomic_write_json(paths(out_dir).metrics / f"{notebook}.json", clean)


def load_profiles(path: str | os.PathLike[str] = PROFILES_FILE) -> dict[str, dict[str, Any]]:
    """Read the profiles file, dropping ``_comment`` keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"profiles file not found: {path}")
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def list_notebooks(notebook_dir: str | os.PathLike[str] = NOTEBOOK_DIR) -> list[Path]:
    """The course notebooks ``NN_*.ipynb`` in order."""
    return sorted(p for p in Path(notebook_dir).iterdir() if _NOTEBOOK_RE.match(p.name))


def notebook_parameters(
    profile: dict[str, Any], notebook: str, raw_dir: Path, out_dir: Path
) -> dict[str, Any]:
    """The parameters one notebook receives under ``profile``."""
    params = dict(profile.get("common", {}))
    params.update(profile.get("notebooks", {}).get(notebook, {}))
    params["RAW_DIR"] = str(raw_dir)
    params["OUT_DIR"] = str(out_dir)
    return params


def resolve_data(profile: dict[str, Any], data: str | None, out_dir: Path) -> Path:
    """The raw dataset folder, which the course only reads.

    An explicit ``data`` (``--data``) must hold a dataset: it is never written to, in any profile.
    Without it, a synthetic profile generates its faces into ``OUT/synthetic`` (once) and a real one
    reads the profile's default folder.
    """
    spec = profile.get("data", {})
    synthetic = spec.get("kind") == "synthetic"
    if data is not None:
        raw = Path(data).resolve()
    elif synthetic:
        raw = (out_dir / "synthetic").resolve()
        if not (raw / "CelebA-HQ-img").is_dir():
            from facesegm_utils import synthetic as synth

            print(f"generating {spec['count']} synthetic faces at {spec['size']}x{spec['size']} in {raw}")
            synth.write_dataset(
                raw, count=int(spec["count"]), size=int(spec["size"]), seed=int(spec.get("seed", 0))
            )
    else:
        raw = (REPO_ROOT / spec.get("default_dir", "data/CelebAMask-HQ")).resolve()
    if raw.exists() and not raw.is_dir():
        raise FacesegmError(f"--data {raw} is a file; expected a folder holding CelebA-HQ-img/")
    if not (raw / "CelebA-HQ-img").is_dir():
        hint = " (leave out --data and the quick profile generates synthetic faces in OUT/synthetic)"
        raise FacesegmError(
            f"no CelebAMask-HQ dataset at {raw}: expected CelebA-HQ-img/ and CelebAMask-HQ-mask-anno/ inside "
            f"(see data/README.md for where to get and unpack it){hint if synthetic else ''}"
        )
    return raw


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``NAME=VALUE`` strings (``--set``) as a dict; each value a JSON literal, else the plain string."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise FacesegmError(f"--set expects NAME=VALUE (e.g. EPOCHS=2), got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[name.strip()] = value
    return out


def _expected_kind(old: Any) -> tuple[str, Any]:
    """What a ``--set`` value must be to replace the profile's ``old``: (description, test)."""
    scalar = (int, float, str)
    kinds: dict[type, tuple[str, Any]] = {
        bool: ("true or false", lambda v: type(v) is bool),
        int: ("an integer", lambda v: type(v) is int),
        float: ("a number", lambda v: type(v) in (int, float)),
        str: ("a string", lambda v: type(v) is str),
        type(None): ("null, a number or a string", lambda v: v is None or type(v) in scalar),
    }
    if type(old) is list:
        inner = {type(v) for v in old}
        name = f"a list of {next(iter(inner)).__name__} values" if len(inner) == 1 else "a list"
        return name, lambda v: type(v) is list and (len(inner) != 1 or all(type(x) in inner for x in v))
    return kinds.get(type(old), ("a JSON value", lambda v: True))


def apply_overrides(profile: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``profile`` with each named parameter replaced wherever the profile sets it.

    A name the profile does not set (in ``common`` or any notebook) is an error listing the valid ones,
    and so is a value of another type than the profile's: an integer for an integer, a number (integer
    or float) for a float, true/false for a boolean, a string for a string, a list of the same element
    type for a list. A parameter the profile sets to null (optional, off) takes null, a number or a
    string; :func:`check_profile` then judges the value itself.
    """
    sections = [profile.get("common", {}), *profile.get("notebooks", {}).values()]
    valid = sorted({k for section in sections for k in section})
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise FacesegmError(
            f"unknown profile parameter(s) {', '.join(unknown)} for --set; expected one of {', '.join(valid)} "
            "(use --data for the raw folder and --out for the output folder)"
        )
    for name, value in overrides.items():
        for old in {json.dumps(s[name]): s[name] for s in sections if name in s}.values():
            kind, ok = _expected_kind(old)
            if not ok(value):
                raise FacesegmError(
                    f"--set {name}={json.dumps(value)}: expected {kind}, like the profile's {json.dumps(old)}"
                )
    new = json.loads(json.dumps(profile))  # a deep copy
    for section in [new.get("common", {}), *new.get("notebooks", {}).values()]:
        section.update({k: v for k, v in overrides.items() if k in section})
    return new


#: notebook parameters -> the TrainConfig options notebook 04 builds from them
TRAIN_OPTIONS = {
    "IMAGE_SIZE": "image_size",
    "EPOCHS": "epochs",
    "STEPS": "max_steps_per_epoch",
    "BATCH_SIZE": "batch_size",
    "BASE_FILTERS": "base_filters",
    "DEPTH": "depth",
    "ENCODER": "encoder",
    "ENCODER_WEIGHTS": "encoder_weights",
    "DECODER_FILTERS": "decoder_filters",
    "MIXED_PRECISION": "mixed_precision",
    "SEED": "seed",
}


def check_profile(profile: dict[str, Any]) -> None:
    """The checks training would make, run on the profile before any notebook starts.

    Every notebook that trains (sets ``EPOCHS``) gets its training options checked by
    ``TrainConfig.validate`` (and the losses it compares by name); integer parameters must be >= 0.
    """
    from facesegm_utils.losses import LOSS_NAMES
    from facesegm_utils.trainconfig import TrainConfig

    for notebook, own in profile.get("notebooks", {}).items():
        params = {**profile.get("common", {}), **own}
        try:
            for name, value in params.items():
                if type(value) is int and value < 0:
                    raise ValueError(f"{name} must be >= 0; got {value}")
            for loss in params.get("COMPARE_LOSSES", []):
                if loss not in LOSS_NAMES:
                    raise ValueError(f"COMPARE_LOSSES: {loss!r} is not one of {', '.join(LOSS_NAMES)}")
            if "EPOCHS" in own:
                options = {TRAIN_OPTIONS[k]: v for k, v in params.items() if k in TRAIN_OPTIONS}
                TrainConfig(data="", out="", **options).validate()
        except (ValueError, TypeError) as exc:
            raise FacesegmError(f"profile parameters of {notebook}: {exc}") from None


class NotebookFailed(FacesegmError):
    """A course notebook raised; the message names the notebook, the cell and the error."""


def run_notebook(path: Path, output: Path, parameters: dict[str, Any], cell_timeout_s: int) -> float:
    """Execute one notebook with papermill (kernel ``python3``); return seconds taken."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(path),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            execution_timeout=cell_timeout_s,
            log_output=True,
            progress_bar=False,
            cwd=str(path.parent),
        )
    except pm.PapermillExecutionError as exc:
        raise NotebookFailed(
            f"notebook {path.name} failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
            f"{exc.ename}: {exc.evalue}. The executed copy is {output}"
        ) from None
    return time.perf_counter() - start


def run_course(
    profile_name: str = "quick",
    data: str | None = None,
    out: str | os.PathLike[str] = "outputs",
    only: list[str] | None = None,
    notebook_dir: str | os.PathLike[str] = NOTEBOOK_DIR,
    profiles_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the course notebooks in order; stop at the first failure. Return the summary dict.

    ``overrides`` (``--set NAME=VALUE``) replace profile parameters (see :func:`apply_overrides`).
    """
    profiles = load_profiles(profiles_file or Path(notebook_dir) / "profiles.json")
    if profile_name not in profiles:
        raise FacesegmError(f"unknown profile {profile_name!r}; expected one of {', '.join(profiles)}")
    profile = apply_overrides(profiles[profile_name], overrides or {})
    check_profile(profile)
    out_dir = Path(out).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise FacesegmError(f"--out {out_dir} is a file; expected a folder for the course's outputs")
    if data is not None:  # checked before anything is written; it is never written to
        resolve_data(profile, data, out_dir)
    notebooks = list_notebooks(notebook_dir)
    if only:
        notebooks = [nb for nb in notebooks if any(nb.stem.startswith(o) for o in only)]
    if not notebooks:
        raise FacesegmError(f"no notebooks NN_*.ipynb found in {notebook_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = resolve_data(profile, data, out_dir)
    # the kernels inherit this: TensorFlow's C++ info and warning lines would drown the course log
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    timings: dict[str, float] = {}
    course_paths = paths(out_dir)
    for nb in notebooks:
        params = notebook_parameters(profile, nb.stem, raw, out_dir)
        print(f"==> {nb.name} ({profile_name} profile)", flush=True)
        timings[nb.stem] = run_notebook(
            nb, course_paths.executed / nb.name, params, int(profile.get("cell_timeout_s", 900))
        )
        print(f"<== {nb.name} done in {timings[nb.stem]:.1f} s", flush=True)
    metrics = {}
    if course_paths.metrics.is_dir():
        for f in sorted(course_paths.metrics.glob("*.json")):
            metrics[f.stem] = json.loads(f.read_text())
    summary = {
        "profile": profile_name,
        "overrides": overrides or {},
        "raw_dir": str(raw),
        "out_dir": str(out_dir),
        "seconds": timings,
        "metrics": metrics,
    }
    atomic_write_json(out_dir / "course_summary.json", summary)
    print_summary(summary)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    """Print time per notebook, the recorded metrics and where the outputs are."""
    print("\nCourse summary")
    if summary.get("overrides"):
        print("  overrides: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in summary["overrides"].items()))
    for name, secs in summary["seconds"].items():
        print(f"  {name:<28} {secs:7.1f} s")
    print(f"  {'total':<28} {sum(summary['seconds'].values()):7.1f} s")
    for name, values in summary["metrics"].items():
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        print(f"  {name}: {shown}")
    out = Path(summary["out_dir"])
    print(f"\nOutputs in {out}:")
    print(f"  executed notebooks: {out / 'notebooks'}")
    print(f"  figures:            {out / 'figures'}")
    print(f"  trained model:      {out / 'run' / 'model.keras'}")
    print(f"  metrics:            {out / 'metrics'} and {out / 'course_summary.json'}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facesegm course``."""
    parser.add_argument("--profile", default="quick", help="profile in notebooks/profiles.json (quick|full)")
    parser.add_argument(
        "--data",
        default=None,
        help="raw dataset folder, only read (default: synthetic faces generated in OUT/synthetic for quick, "
        "data/CelebAMask-HQ for full)",
    )
    parser.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only notebooks whose names start with these (e.g. 01 02)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a profile parameter (repeatable); VALUE is a JSON literal, else a string, "
        "e.g. --set EPOCHS=2 --set ENCODER=null --set LOSS=ce",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facesegm course``."""
    run_course(args.profile, args.data, args.out, args.only, overrides=parse_overrides(args.overrides))
    return 0
