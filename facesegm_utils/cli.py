"""The ``facesegm`` command line.

Each subcommand lives in the module that owns its concept. The module provides two functions:

* ``add_arguments(parser: argparse.ArgumentParser) -> None`` declares the options;
* ``run_cli(args: argparse.Namespace) -> int`` does the work and returns an exit status.

Only the chosen subcommand's module is imported, so ``facesegm synth`` never pays for a
TensorFlow import. Path options that must be a folder or a file (:data:`PATH_KINDS`) are checked
before the command starts: a file where a folder is expected, or the reverse, exits with status 2.
Bad input (``FacesegmError``, a missing file, a path of the wrong kind, or a ``ValueError`` raised by
the package's own checks) is printed as one clear line and exits with status 2; any other failure is
an internal error, printed as one short line (never a library's whole message) with exit status 1.

``facesegm train`` with ``TF_CONFIG`` set (multi-worker training) runs under :func:`supervise`, so
that SIGTERM ends a worker even while it waits for its peers inside TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: set in the child process that :func:`supervise` starts
CHILD_ENV = "FACESEGM_SUPERVISED"

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("facesegm_utils.synthetic", "generate synthetic faces in the raw CelebAMask-HQ layout"),
    "prepare": ("facesegm_utils.prepare", "merge part masks, resize and split a raw dataset"),
    "train": ("facesegm_utils.training", "train a U-Net on a prepared dataset"),
    "evaluate": ("facesegm_utils.evaluation", "score a model or a folder of predictions"),
    "show": ("facesegm_utils.show", "draw a mask, confusion matrix or recolour view for one image"),
    "predict": ("facesegm_utils.inference", "write label maps for an image or a folder"),
    "recolor": ("facesegm_utils.recolor_cli", "recolour lips, hair, ... in images, folders or videos"),
    "course": ("facesegm_utils.course", "run every course notebook with papermill"),
    "site": ("facesegm_utils.website", "render the executed course notebooks as a static site (make site)"),
    "export": ("facesegm_utils.export", "export a model to ONNX, LiteRT or SavedModel with checked parity"),
    "serve": ("facesegm_utils.serve", "serve the live recolour page (web/) for a model on 127.0.0.1"),
}


#: subcommand -> {option dest: "folder" or "file"}: what an existing path given there must be
#: (a missing one is left to the command: an output folder is created, an input reported missing)
PATH_KINDS: dict[str, dict[str, str]] = {
    "synth": {"out": "folder"},
    "prepare": {"raw": "folder", "out": "folder"},
    "train": {"data": "folder", "out": "folder"},
    "evaluate": {"pred_dir": "folder", "data": "folder", "out": "file"},
    "show": {"image": "file", "data": "folder", "report": "file", "out": "file"},
    "predict": {"out": "folder"},
    "course": {"data": "folder", "out": "folder"},
}


def check_paths(args: argparse.Namespace) -> None:
    """Raise ``FacesegmError`` for a path option naming a file where a folder is expected, or the reverse."""
    from facesegm_utils.fileio import FacesegmError

    for dest, kind in PATH_KINDS.get(args.command, {}).items():
        value = getattr(args, dest, None)
        if value is None or kind == "any" or not Path(value).exists():
            continue
        option = "--" + dest.replace("_", "-")
        if kind == "folder" and not Path(value).is_dir():
            raise FacesegmError(f"{option} {value} is a file; expected a folder")
        if kind == "file" and Path(value).is_dir():
            raise FacesegmError(f"{option} {value} is a folder; expected a file")


def supervise(argv: Sequence[str]) -> int:
    """Run ``facesegm argv`` in a child process that ends, with its worker's temporary folder, on SIGTERM.

    Multi-worker training needs this: TensorFlow's coordination service installs a SIGTERM handler
    that only records the signal, and a worker waiting for its peers is blocked in C++ holding
    Python's interpreter lock, so nothing in that process can act on the signal. This parent holds
    no TensorFlow: on SIGTERM it kills the child, removes the child's temporary folders and exits
    with status 143; otherwise it returns the child's exit status.
    """
    import glob
    import shutil
    import signal
    import subprocess
    import tempfile

    child = subprocess.Popen(
        [sys.executable, "-m", "facesegm_utils.cli", *argv], env={**os.environ, CHILD_ENV: "1"}
    )

    def stop(signum: int, frame: object) -> None:
        os.kill(child.pid, signal.SIGKILL)  # not child.wait(): the interrupted wait holds its lock
        os.waitpid(child.pid, 0)
        for path in glob.glob(os.path.join(tempfile.gettempdir(), f"facesegm-worker*-{child.pid}-*")):
            shutil.rmtree(path, ignore_errors=True)
        print("facesegm: stopped by SIGTERM", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    return child.wait()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s module is imported to declare its options."""
    parser = argparse.ArgumentParser(
        prog="facesegm", description="Face parsing with a U-Net on CelebAMask-HQ."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facesegm`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command == "train" and os.environ.get("TF_CONFIG") and not os.environ.get(CHILD_ENV):
        return supervise(argv)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2

    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        check_paths(args)
        return int(module.run_cli(args) or 0)
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line, bad input with exit 2
        if os.environ.get("FACESEGM_DEBUG"):
            raise
        if _is_user_error(exc):
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"facesegm {args.command}: error: {_short(str(msg))}", file=sys.stderr)
            return 2
        first = (str(exc).splitlines() or [""])[0]
        print(
            f"facesegm {args.command}: internal error ({type(exc).__name__}): {_short(first)}\n"
            "This is a failure inside the program, not a problem with the input; "
            "FACESEGM_DEBUG=1 shows the full traceback.",
            file=sys.stderr,
        )
        return 1


#: the longest message printed; the rest is cut (a library's message can hold whole tensors)
MAX_MESSAGE = 500


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + " ... (message cut)"


def _is_user_error(exc: BaseException) -> bool:
    """Bad input: a ``FacesegmError``, a missing file or a path of the wrong kind, or a
    ``ValueError``/``KeyError`` raised by this package's own checks. The same types raised inside TensorFlow/Keras are internal failures."""
    from facesegm_utils.fileio import FacesegmError

    if isinstance(
        exc, (FacesegmError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)
    ):
        return True
    if not isinstance(exc, (ValueError, KeyError)):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().parent == PACKAGE_DIR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
