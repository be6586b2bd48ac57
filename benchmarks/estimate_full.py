"""An estimate of the full profile's GPU memory and time per epoch, from its model's measured FLOPs.

Builds the model notebook 04 trains in the full profile (``notebooks/profiles.json``: image size,
encoder, widths; random weights, nothing downloaded) and measures, per 512² image:

- FLOPs of one forward pass (``model.flops_per_image``);
- activation memory: the elements of every layer output, which backpropagation keeps;
- parameters (weights, gradients and two Adam moments in float32).

Time per epoch is then scaled from a measured reference run: ``bench_train`` on an NVIDIA H100
80GB HBM3 trained the plain U-Net at 182.9 images/s at 512² in mixed precision, batch 8
(benchmarks/README.md). The same counts are taken for that reference model; its rate scaled by
FLOPs (compute-bound) and by activation values (memory-bound) bracket the full model's, and the
estimate takes the slower. It is an **estimate**, not a measurement. Host memory for the input
comes from ``bench_scale``.

Run: ``.venv/bin/python benchmarks/estimate_full.py``; rewrites the ``estimate_full`` section.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TRAIN_FACES, VAL_FACES = 24_183, 2_993  # official CelebAMask-HQ split (test: 2,824)


def measure(size: int, nb04: dict) -> dict[str, float]:
    """FLOPs, activation elements and parameters per image of the full profile's model."""
    import numpy as np

    from facesegm_utils import model
    from facesegm_utils.trainconfig import TrainConfig

    default = TrainConfig(data="", out="")
    net = model.build_unet(
        size,
        base_filters=int(nb04.get("BASE_FILTERS", default.base_filters)),
        depth=int(nb04.get("DEPTH", default.depth)),
        encoder=nb04.get("ENCODER", default.encoder),
        encoder_weights=None,
        decoder_filters=nb04.get("DECODER_FILTERS", default.decoder_filters),
    )
    acts = sum(
        int(np.prod(model._shape(layer.output), dtype=np.int64))
        for layer in model._iter_layers(net)
        if type(layer).__name__ != "InputLayer"
    )
    return {
        "gflops": model.flops_per_image(net) / 1e9,
        "activations": float(acts),
        "params": float(model.count_params(net)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref-device", default="NVIDIA H100 80GB HBM3")
    parser.add_argument("--ref-img-s", type=float, default=182.9, help="reference training images/s")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the profile's")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    from facesegm_utils import course

    profile = course.load_profiles()["full"]
    size = int(profile["common"]["IMAGE_SIZE"])
    nb04 = profile["notebooks"]["04_training"]
    batch = args.batch_size or int(nb04["BATCH_SIZE"])
    m = measure(size, nb04)
    # the reference: bench_train's default plain U-Net (base 32, depth 4), measured on the GPU
    ref = measure(size, {"BASE_FILTERS": 32, "DEPTH": 4, "ENCODER": None, "DECODER_FILTERS": None})
    by_flops = args.ref_img_s * ref["gflops"] / m["gflops"]  # if it were compute-bound
    by_traffic = args.ref_img_s * ref["activations"] / m["activations"]  # if memory-bound
    rate = min(by_flops, by_traffic)
    epoch_s = TRAIN_FACES / rate + VAL_FACES / (3 * rate)  # validation: forward only (~1/3 of a step)
    act_gb = m["activations"] * batch * 2 / 2**30  # float16 activations under mixed precision
    param_gb = m["params"] * 4 * 4 / 2**30  # weights, gradients, Adam m and v in float32
    encoder = nb04.get("ENCODER") or "plain"
    from _readme import machine, today, update_section

    md = [
        "## estimate_full: the full profile's GPU memory and time per epoch (an estimate)",
        "",
        f"Machine (model counts only, no GPU): {machine()}. Date: {today()}.",
        "Command: `.venv/bin/python benchmarks/estimate_full.py`",
        "",
        "| per 512² image | full profile's model | reference (bench_train's plain U-Net) |",
        "|---|---:|---:|",
        f"| model | encoder `{encoder}`, base {nb04.get('BASE_FILTERS')}, decoder filters "
        f"{nb04.get('DECODER_FILTERS')} | plain, base 32, depth 4 |",
        f"| parameters | {m['params'] / 1e6:.2f} M | {ref['params'] / 1e6:.2f} M |",
        f"| forward GFLOPs (`model.flops_per_image`) | {m['gflops']:.1f} | {ref['gflops']:.1f} |",
        f"| activation values (every layer output) | {m['activations'] / 1e6:.0f} M "
        f"| {ref['activations'] / 1e6:.0f} M |",
        f"| training images/s on an {args.ref_device}, mixed precision, batch 8 | **{rate:.0f}** (estimate) "
        f"| {args.ref_img_s} (measured) |",
        "",
        f"The reference's rate scaled by FLOPs gives {by_flops:.0f} images/s (if training were "
        f"compute-bound) and scaled by activation values {by_traffic:.0f} images/s (if it were bound by "
        "memory traffic, as depthwise convolutions and the wide full-resolution layers are); the "
        "estimate takes the slower.",
        "",
        "| full profile | estimate | how |",
        "|---|---:|---|",
        f"| one epoch ({TRAIN_FACES:,} train + {VAL_FACES:,} val faces) | **{epoch_s / 60:.1f} min** | "
        f"{rate:.0f} images/s training, validation (forward only) at 3x that |",
        f"| GPU memory, batch {batch}, mixed precision | **{act_gb + param_gb:.1f} GB** + framework "
        f"workspace | activations kept for backprop {act_gb:.1f} GB (float16) + weights, gradients and "
        f"Adam {param_gb:.2f} GB (float32) |",
        "",
        "These are **estimates**, not measurements: the reference ran on JAX (see bench_train), the "
        "course trains with TensorFlow, and real kernels do not scale exactly with either count. "
        "At that rate a GPU also needs the input pipeline to keep up (bench_prepare measured about "
        "120 images/s of 512² input on 2 CPU cores: count on 16 or more cores). Measure with "
        "`bench_train.py` on the target GPU before planning a long run.",
    ]
    text = "\n".join(md)
    print(text)
    if not args.no_readme:
        update_section("estimate_full", text)


if __name__ == "__main__":
    main()
