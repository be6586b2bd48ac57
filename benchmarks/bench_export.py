"""Exported models on the CPU: latency per image and file size of Keras, ONNX Runtime and LiteRT, and
the live page's frame rate in headless Chromium (onnxruntime-web).

Python runtimes: the course's quick U-Net (plain, base 8, depth 4) and the default recipe's
EfficientNet-Lite0 U-Net, each at 256² and 512², with random weights (latency does not depend on
them). Each is exported with :func:`facesegm_utils.export.write_variant` (the same call as
``facesegm export``); Keras ``predict_on_batch``, ONNX Runtime and LiteRT (float32 and float16) then
run one image at a time, interleaved over rounds, all with 2 threads; the median ms is reported.

Browser: ``facesegm serve``'s page, Chromium fed a synthetic face by its fake camera, for the same
models at 256², 192² and 128² on the WebAssembly backend (2 threads, cross-origin isolated), and
WebGL / WebGPU where headless Chromium offers them. Frames per second and model ms per frame are
read from the page after a warm-up (median of its one-second readings).

Run: ``.venv/bin/python benchmarks/bench_export.py`` (needs ``make web``; rewrites the
``bench_export`` section of benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _readme import machine, today, update_section  # noqa: E402

from facesegm_utils import export, serve  # noqa: E402
from facesegm_utils.synthetic import generate_face  # noqa: E402

MODELS = {
    "quick U-Net (base 8)": {"base_filters": 8, "depth": 4},
    "Lite0 U-Net (default)": {"encoder": "efficientnet_lite0", "decoder_filters": 16},
}
THREADS = 2
LAUNCH = [
    "--headless",
    "--no-sandbox",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
GPU_FLAGS = {
    "wasm": ["--disable-gpu"],
    "webgl": ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
    "webgpu": ["--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"],
}


def build(name: str, size: int, folder: Path) -> Path:
    import keras

    from facesegm_utils.model import build_unet

    keras.utils.set_random_seed(0)
    model = build_unet(size, **MODELS[name])
    path = folder / f"{name.split()[0]}{size}.keras"
    model.save(path)
    return path


def python_latency(
    name: str, size: int, folder: Path, rounds: int, calls: int
) -> dict[str, dict[str, float]]:
    """Median ms per image and file size of each runtime, run interleaved."""
    from facesegm_utils.prediction import load

    source = build(name, size, folder)
    model = load(source)
    model(np.zeros((1, size, size, 3), np.float32))
    runners = {"Keras": (model, source.stat().st_size)}
    for variant, file in (
        ("onnx", "model.onnx"),
        ("litert_float32", "f32.tflite"),
        ("litert_float16", "f16.tflite"),
    ):
        path = folder / f"{source.stem}_{file}"
        export.write_variant(model, variant, path, [])
        runners[variant] = (export.load_exported(path, threads=THREADS), path.stat().st_size)
    ms = export.latency_ms({k: r for k, (r, _) in runners.items()}, size, rounds, calls)
    return {k: {"ms": ms[k], "mb": runners[k][1] / 1e6} for k in runners}


def page_speed(run: Path, backend: str, seconds: float) -> dict[str, float | str]:
    """Frames per second and model ms per frame that the page shows, on the fake camera."""
    from playwright.sync_api import sync_playwright

    clip = serve.write_y4m(run / "face.y4m", [generate_face(0, k, 256)[0] for k in range(2)])
    server, url = serve.serve_in_thread(serve.ensure_onnx(run))
    args = [*LAUNCH, *GPU_FLAGS[backend], f"--use-file-for-fake-video-capture={clip}"]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            page = browser.new_page()
            page.goto(f"{url}?backend={backend}")
            page.wait_for_function(
                "document.body.dataset.fps || document.body.dataset.state === 'error'", timeout=120_000
            )
            if page.evaluate("document.body.dataset.state") == "error":
                return {"error": page.inner_text("#status")}
            fps, ms = [], []
            for _ in range(int(seconds)):
                time.sleep(1.0)
                fps.append(float(page.evaluate("document.body.dataset.fps")))
                ms.append(float(page.evaluate("document.body.dataset.modelMs")))
            browser.close()
    finally:
        server.shutdown()
    return {"fps": statistics.median(fps), "ms": statistics.median(ms)}


def browser_runs(folder: Path, seconds: float) -> list[tuple[str, int, str, dict]]:
    rows = []
    plan = [(name, size, "wasm") for size in (256, 192, 128) for name in MODELS]
    plan += [(next(iter(MODELS)), 256, "webgl"), (next(iter(MODELS)), 256, "webgpu")]
    for name, size, backend in plan:
        run = folder / f"page_{name.split()[0]}{size}"
        run.mkdir(exist_ok=True)
        keras_file = run / "model.keras"
        if not keras_file.exists():
            os.replace(build(name, size, folder), keras_file)
        try:
            result = page_speed(run, backend, seconds)
        except Exception as exc:  # noqa: BLE001 - a backend headless Chromium lacks is a result
            result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
        manifest = run / "export" / export.EXPORT_JSON
        parity = json.loads(manifest.read_text())["parity"]["onnx"] if manifest.exists() else {}
        print(name, size, backend, result, flush=True)
        rows.append((name, size, backend, {**result, "parity": parity}))
    return rows


def markdown(python: dict, browser: list, args: argparse.Namespace, load: str) -> str:
    lines = [
        "## bench_export",
        "",
        f"Machine: {machine()}. Date: {today()}. Load average while it ran: {load} (a shared machine: "
        "absolute ms are noisy; the runtimes were interleaved, so their ratios less so).",
        f"Command: `.venv/bin/python benchmarks/bench_export.py --rounds {args.rounds} --calls {args.calls}`",
        "",
        f"### Python runtimes on the CPU ({THREADS} threads), one image per call, median of {args.rounds} "
        "interleaved rounds",
        "",
        "| model | input | Keras | ONNX Runtime | LiteRT float32 | LiteRT float16 | ORT ms ÷ Keras ms | "
        "file MB (.keras / .onnx / f32 / f16) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for (name, size), r in python.items():
        ms = [r[k]["ms"] for k in ("Keras", "onnx", "litert_float32", "litert_float16")]
        mb = " / ".join(f"{r[k]['mb']:.2f}" for k in ("Keras", "onnx", "litert_float32", "litert_float16"))
        lines.append(
            f"| {name} | {size}² | "
            + " | ".join(f"{m:.1f} ms" for m in ms)
            + f" | {ms[1] / ms[0]:.2f}x | {mb} |"
        )
    lines += [
        "",
        f"### The live page in headless Chromium (onnxruntime-web), fake camera, median over {args.seconds} s",
        "",
        "| model | input | backend | frames/s | model ms/frame | ONNX parity of this (random-weight) model: argmax, max prob diff |",
        "|---|---|---|---:|---:|---|",
    ]
    for name, size, backend, r in browser:
        par = r["parity"]
        par_text = f"{par['argmax_agreement']:.2%}, {par['max_prob_diff']:.1e}" if par else "-"
        if "error" in r:
            lines.append(f"| {name} | {size}² | {backend} | not available: {r['error']} | | {par_text} |")
        else:
            lines.append(f"| {name} | {size}² | {backend} | {r['fps']:.1f} | {r['ms']:.0f} | {par_text} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--no-readme", action="store_true", help="print only")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        python = {}
        for size in (256, 512):
            for name in MODELS:
                python[(name, size)] = python_latency(name, size, folder, args.rounds, args.calls)
                print(name, size, python[(name, size)], flush=True)
        browser = browser_runs(folder, args.seconds)
    load = f"{os.getloadavg()[0]:.1f}"
    if args.json:
        Path(args.json).write_text(
            json.dumps({"python": [[*k, v] for k, v in python.items()], "browser": browser})
        )
    text = markdown(python, browser, args, load)
    print(text)
    if not args.no_readme:
        update_section("bench_export", text)


if __name__ == "__main__":
    main()
