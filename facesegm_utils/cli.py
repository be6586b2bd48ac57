"""The ``facesegm`` command line.

Each subcommand lives in the module that owns its concept. The module provides two functions:

* ``add_arguments(parser: argparse.ArgumentParser) -> None`` declares the options;
* ``run_cli(args: argparse.Namespace) -> int`` does the work and returns an exit status.

Only the chosen subcommand's module is imported, so ``facesegm synth`` never pays for a
TensorFlow import. Errors raised as ``FacesegmError`` (or ``FileNotFoundError``/``ValueError``)
are printed as one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("facesegm_utils.synthetic", "generate synthetic faces in the raw CelebAMask-HQ layout"),
    "prepare": ("facesegm_utils.prepare", "merge part masks, resize and split a raw dataset"),
    "train": ("facesegm_utils.training", "train a U-Net on a prepared dataset"),
    "evaluate": ("facesegm_utils.evaluation", "score a model or a folder of predictions"),
    "show": ("facesegm_utils.show", "draw a mask, confusion matrix or recolour view for one image"),
    "predict": ("facesegm_utils.inference", "write label maps for an image or a folder"),
    "recolor": ("facesegm_utils.video", "recolour lips, hair, ... in images, folders or videos"),
    "course": ("facesegm_utils.course", "run every course notebook with papermill"),
}


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
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from facesegm_utils.fileio import FacesegmError

    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run_cli(args) or 0)
    except (FacesegmError, FileNotFoundError, NotADirectoryError, ValueError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"facesegm {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
