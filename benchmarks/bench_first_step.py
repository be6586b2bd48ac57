"""The first epoch of a run: the optimizer built by ``compile_model`` against built inside fit's trace.

Keras builds Adam's slots in ``fit`` only under a distribution strategy; otherwise it creates them
while tracing the first train step, and a ``tf.function`` that creates variables is traced twice.
``callbacks.compile_model`` builds the optimizer beforehand (in the strategy's scope). This times
one short epoch of a fresh model each way, in alternating rounds in one process, and checks that
both ways reach the same loss (the slots start at zero either way)::

    python benchmarks/bench_first_step.py --encoder efficientnet_lite0 --image-size 128

Every training run pays it once: notebook 04 trains six models (loss comparison, main run, scratch
vs pretrained), and the CI's tests train dozens.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _readme import machine, today, update_section  # noqa: E402

from facesegm_utils import callbacks  # noqa: E402
from facesegm_utils.labels import NUM_CLASSES  # noqa: E402
from facesegm_utils.losses import CEDiceLoss  # noqa: E402
from facesegm_utils.model import build_unet  # noqa: E402


def first_epoch(args: argparse.Namespace, prebuilt: bool) -> tuple[float, float]:
    """Seconds of the first ``fit`` epoch (tracing included) of a fresh model, and its loss."""
    keras.utils.set_random_seed(0)
    net = build_unet(args.image_size, encoder=args.encoder, decoder_filters=16, base_filters=8)
    callbacks.compile_model(net, CEDiceLoss(), 1e-3, NUM_CLASSES)
    if not prebuilt:  # the same compile with an unbuilt Adam: fit's first trace makes its slots
        net.optimizer = keras.optimizers.Adam(1e-3)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch_size * args.steps, args.image_size, args.image_size, 3))
    y = rng.integers(0, NUM_CLASSES, x.shape[:3])
    t0 = time.perf_counter()
    history = net.fit(x.astype("float32"), y.astype("int32"), batch_size=args.batch_size, epochs=1, verbose=0)
    return time.perf_counter() - t0, float(history.history["loss"][-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="efficientnet_lite0", help="a registered encoder, or none")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    args.encoder = None if args.encoder == "none" else args.encoder
    seconds: dict[bool, list[float]] = {True: [], False: []}
    losses: dict[bool, float] = {}
    loads = []
    for _ in range(args.rounds):
        for prebuilt in (False, True):
            s, losses[prebuilt] = first_epoch(args, prebuilt)
            seconds[prebuilt].append(s)
        loads.append(os.getloadavg()[0])
    before, after = (statistics.median(seconds[k]) for k in (False, True))
    command = "python benchmarks/bench_first_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    markdown = "\n".join(
        [
            "## bench_first_step: the optimizer built before fit against inside its first trace",
            "",
            f"- machine: {machine()}; date: {today()}; load average while it ran: "
            f"{min(loads):.1f} to {max(loads):.1f}",
            f"- command: `{command}`",
            f"- model: U-Net, encoder `{args.encoder}`, {args.image_size}², batch {args.batch_size}; the first "
            f"epoch of {args.steps} steps of a fresh model (tracing included), median of {args.rounds} "
            "alternating rounds",
            "",
            "| Adam's slots made | first epoch, s | loss after it |",
            "|---|---:|---:|",
            f"| in fit's first trace (Keras's default outside a strategy) | {before:.1f} | {losses[False]:.4f} |",
            f"| by `compile_model` | {after:.1f} | {losses[True]:.4f} |",
            "",
            f"Building first saves **{before - after:.1f} s** a run (**{after / before:.2f}x** the time) "
            f"at the same loss.",
        ]
    )
    print(markdown)
    if not args.no_readme:
        update_section("bench_first_step", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
