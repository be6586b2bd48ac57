"""Training throughput and inference latency of the default U-Net, float32 against mixed precision.

Runs under any Keras backend (no TensorFlow import here or in what it imports), on synthetic random
tensors, so it needs no dataset::

    python benchmarks/bench_train.py --quick                      # CPU, small sizes
    KERAS_BACKEND=jax python benchmarks/bench_train.py --device-label "NVIDIA H100"

For each image size and precision it builds ``build_unet(S)`` (the package defaults), compiles it
with the default loss, runs warm-up steps (excluded), then times ``train_on_batch`` steps (training
images/s) and ``predict_on_batch`` at batch 1 and 8 (ms/image). Mixed precision is only measured
where a GPU exists (``mixed_float16``); the CPU's ``mixed_bfloat16`` can be asked for with
``--precisions float32 mixed_bfloat16``. The float32 run is the baseline, in the same process.

``--models`` compares architectures side by side instead (float32): the plain U-Net at the course's
widths (``unet8``, ``unet16``, ``unet32``) against the pretrained ``efficientnet_lite0`` encoder with
the training defaults' light decoder; each model's training rate is also given as a ratio to
``--baseline``'s (default ``unet16``) at the same size::

    python benchmarks/bench_train.py --models unet8 unet16 unet32 efficientnet_lite0 --sizes 256 512 \
        --section bench_train_encoder
    python benchmarks/bench_train.py --quick --sizes 256 512 --baseline efficientnet_lite0 \
        --models efficientnet_lite0 efficientnet_lite2 --section bench_train_lite2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
from _readme import machine, today, update_section  # noqa: E402

from facesegm_utils.losses import get_loss  # noqa: E402
from facesegm_utils.model import build_unet, count_params, flops_per_image  # noqa: E402

#: --models: name -> build_unet arguments (``default`` = the package defaults)
MODELS: dict[str, dict[str, object]] = {
    "default": {},
    "unet8": {"encoder": None, "encoder_weights": None, "base_filters": 8, "depth": 4},
    "unet16": {"encoder": None, "encoder_weights": None, "base_filters": 16, "depth": 4},
    "unet32": {"encoder": None, "encoder_weights": None, "base_filters": 32, "depth": 4},
    # the weights do not change the timing; random ones avoid touching the user's weight cache
    "efficientnet_lite0": {
        "encoder": "efficientnet_lite0",
        "encoder_weights": None,
        "decoder_filters": 16,
    },
    "efficientnet_lite2": {
        "encoder": "efficientnet_lite2",
        "encoder_weights": None,
        "decoder_filters": 16,
    },
}


def has_gpu() -> bool:
    """Whether the current Keras backend sees a GPU."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_available())
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
    except Exception:  # noqa: BLE001 - a backend without GPU support simply has none
        return False
    return False


def _sync(x: object) -> object:
    return keras.ops.convert_to_numpy(x) if x is not None else x


def measure(
    size: int,
    precision: str,
    batch: int,
    steps: int,
    warmup: int,
    infer_reps: int,
    loss: str = "ce+dice",
    **model_kwargs: object,
) -> dict[str, float]:
    """Training images/s and inference ms/image (batch 1 and 8) for one size and precision."""
    previous = keras.mixed_precision.global_policy()
    try:
        keras.utils.clear_session()  # resets the global dtype policy, so the policy is set after it
        keras.mixed_precision.set_global_policy(precision)
        keras.utils.set_random_seed(0)
        model = build_unet(size, **model_kwargs)
        if model.layers[-2].compute_dtype != keras.mixed_precision.global_policy().compute_dtype:
            raise RuntimeError(f"model computes in {model.layers[-2].compute_dtype}, expected {precision}")
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss(loss))
        rng = np.random.default_rng(0)
        # Tensors are placed on the device once, so the timings measure the model and not the
        # host-to-device copy of a numpy batch (which a prefetching input pipeline overlaps).
        x = keras.ops.convert_to_tensor(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
        y = keras.ops.convert_to_tensor(rng.integers(0, 19, (batch, size, size)).astype("int32"))
        for _ in range(warmup):
            _sync(model.train_on_batch(x, y))
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            _sync(model.train_on_batch(x, y))
            times.append(time.perf_counter() - t0)
        train_ips = batch / statistics.median(times)
        result = {"train_images_per_s": train_ips}
        # Inference returns what a user keeps: the uint8 label map, argmax taken on the device.
        labeller = keras.Model(model.input, keras.ops.cast(keras.ops.argmax(model.output, axis=-1), "uint8"))
        for b in (1, 8):
            xb = x[:b] if b <= batch else keras.ops.repeat(x[:1], b, axis=0)
            for _ in range(2):
                _sync(labeller.predict_on_batch(xb))
            lat = []
            for _ in range(infer_reps):
                t0 = time.perf_counter()
                _sync(labeller.predict_on_batch(xb))
                lat.append(time.perf_counter() - t0)
            result[f"infer_ms_per_image_b{b}"] = 1000 * statistics.median(lat) / b
        result["params"] = count_params(model)
        result["gflops_per_image"] = flops_per_image(model) / 1e9
        return result
    finally:
        keras.mixed_precision.set_global_policy(previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small settings for a CPU (sizes 128 256, few steps)"
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="default 256 512 (quick: 128 256)")
    parser.add_argument(
        "--precisions", nargs="*", default=None, help="default float32 (+ mixed_float16 on a GPU)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="training batch (default 8, quick 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default 20, quick 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default 5, quick 2)")
    parser.add_argument(
        "--device-label", default=None, help="names the card in the README, e.g. 'NVIDIA H100'"
    )
    parser.add_argument("--loss", default="ce+dice", help="training loss: ce, dice or ce+dice (default)")
    parser.add_argument(
        "--models", nargs="*", choices=tuple(MODELS), default=["default"], help="architectures to compare"
    )
    parser.add_argument(
        "--baseline", default="unet16", choices=tuple(MODELS), help="--models: the model ratios refer to"
    )
    parser.add_argument("--out-json", default=None)
    parser.add_argument(
        "--section", default="bench_train", help="README section to write (default bench_train)"
    )
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite benchmarks/README.md")
    args = parser.parse_args(argv)

    gpu = has_gpu()
    sizes = args.sizes or ([128, 256] if args.quick else [256, 512])
    precisions = args.precisions or (["float32", "mixed_float16"] if gpu else ["float32"])
    batch = args.batch_size or (4 if args.quick else 8)
    steps = args.steps or (4 if args.quick else 20)
    warmup = args.warmup or (2 if args.quick else 5)
    infer_reps = 3 if args.quick else 20
    backend = keras.backend.backend()
    device = args.device_label or ("GPU" if gpu else "CPU")
    print(
        f"backend {backend}, device {device}, sizes {sizes}, precisions {precisions}, batch {batch}",
        flush=True,
    )

    rows = []
    for name in args.models:
        for size in sizes:
            for precision in precisions:
                r = measure(size, precision, batch, steps, warmup, infer_reps, loss=args.loss, **MODELS[name])
                r.update({"model": name, "size": size, "precision": precision})
                rows.append(r)
                print(json.dumps(r), flush=True)
    if args.models != ["default"]:
        return _write_models(args, rows, batch, steps, warmup, device, backend, argv)
    ratios = {}
    for size in sizes:
        base = next((r for r in rows if r["size"] == size and r["precision"] == "float32"), None)
        for r in rows:
            if base is not None and r["size"] == size and r["precision"] != "float32":
                ratios[f"{size}:{r['precision']}/float32"] = (
                    r["train_images_per_s"] / base["train_images_per_s"]
                )
    command = "python benchmarks/bench_train.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if backend != "tensorflow":
        command = f"KERAS_BACKEND={backend} " + command
    result = {
        "machine": machine(),
        "device": device,
        "backend": backend,
        "keras": keras.__version__,
        "date": today(),
        "command": command,
        "batch_size": batch,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "rows": rows,
        "train_speedup": ratios,
    }
    if args.out_json:
        Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.out_json).with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, args.out_json)
    lines = [
        "## bench_train: default U-Net training throughput and inference latency",
        "",
        f"- machine: {machine()}; device: **{device}**; Keras {keras.__version__}, backend **{backend}**",
        f"- date: {today()}; training batch {batch}, {steps} timed steps after {warmup} warm-up steps (median)",
        f"- command: `{command}`",
        f"- model: `build_unet(S)` defaults ({rows[0]['params']:,} parameters); loss `{args.loss}`",
        "",
        "| size | precision | GFLOPs/image | train images/s | infer ms/image (b=1) | infer ms/image (b=8) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['precision']} | {r['gflops_per_image']:.1f} | {r['train_images_per_s']:.1f} "
            f"| {r['infer_ms_per_image_b1']:.1f} | {r['infer_ms_per_image_b8']:.1f} |"
        )
    if ratios:
        lines += ["", "Training speed-up against float32 in the same run:", ""]
        lines += [f"- {k}: **{v:.2f}x**" for k, v in ratios.items()]
    elif not gpu:
        lines += [
            "",
            "No GPU here, so no mixed-precision ratio: float16 on a CPU is emulated and only slower.",
        ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_readme:
        update_section(args.section, markdown)
    return 0


def _write_models(
    args: argparse.Namespace,
    rows: list[dict],
    batch: int,
    steps: int,
    warmup: int,
    device: str,
    backend: str,
    argv: list[str] | None,
) -> int:
    """The --models comparison: one row per model and size, training rate as a ratio to the baseline's
    (its first run at that size)."""
    base: dict[int, dict] = {}
    for r in rows:
        if r["model"] == args.baseline and r["precision"] == "float32":
            base.setdefault(r["size"], r)
    for r in rows:
        b = base.get(r["size"])
        r["train_ratio_to_baseline"] = r["train_images_per_s"] / b["train_images_per_s"] if b else None
    command = "python benchmarks/bench_train.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.out_json:
        Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out_json).write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    lines = [
        f"## bench_train: {', '.join(dict.fromkeys(args.models))} side by side",
        "",
        f"- machine: {machine()}; device: **{device}**; Keras {keras.__version__}, backend **{backend}**",
        f"- date: {today()}; training batch {batch}, {steps} timed steps after {warmup} warm-up steps (median)",
        f"- command: `{command}`",
        "- models: `unetN` = plain U-Net, base N, depth 4; `efficientnet_liteN` = that pretrained encoder "
        "with the training defaults' light decoder (16: 128, 64, 48, 32, 16 filters)",
        "",
        f"| model | size | params | GFLOPs/image | train images/s | vs {args.baseline} "
        "| infer ms/image (b=1) | (b=8) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['train_ratio_to_baseline']:.2f}x" if r["train_ratio_to_baseline"] else "-"
        lines.append(
            f"| {r['model']} | {r['size']} | {r['params']:,} | {r['gflops_per_image']:.2f} "
            f"| {r['train_images_per_s']:.2f} | {ratio} | {r['infer_ms_per_image_b1']:.1f} "
            f"| {r['infer_ms_per_image_b8']:.1f} |"
        )
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_readme:
        update_section(args.section, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
