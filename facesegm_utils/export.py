"""Take a trained model out of Python: ONNX, LiteRT (float32, float16, optional int8) and SavedModel.

``facesegm export --model RUN --format onnx|litert|savedmodel --out DIR`` writes the files with
Keras 3's own :meth:`keras.Model.export` (which relies on ``tf2onnx`` for ONNX and on TensorFlow's
``tf.lite.TFLiteConverter`` for LiteRT), then measures each file's parity with the Keras model on
synthetic test faces and writes ``DIR/export.json``: the input size and layout, the classes and
palette, each file's SHA-256 and size, and the parity figures.

The preprocessing (0..255 -> the encoder's range) is a layer of the model, so every exported file
takes RGB float32 in 0..255 at the model's input size, NHWC, and returns logits (NHWC, 19 classes).

:func:`load_exported` wraps an exported file in an object with ``predict_on_batch``, so the one
prediction path, :func:`facesegm_utils.prediction.predict_proba`, runs it exactly as a Keras model.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facesegm_utils.fileio import FacesegmError, atomic_write_json
from facesegm_utils.labels import CLASSES, NUM_CLASSES, PALETTE

FORMATS: tuple[str, ...] = ("onnx", "litert", "savedmodel")
#: format -> variant -> file (or folder) name written into the output folder
FILES: dict[str, dict[str, str]] = {
    "onnx": {"onnx": "model.onnx"},
    "litert": {"litert_float32": "model_float32.tflite", "litert_float16": "model_float16.tflite"},
    "savedmodel": {"savedmodel": "savedmodel"},
}
INT8: tuple[str, str] = ("litert_int8", "model_int8.tflite")
#: argmax agreement with Keras that each variant must reach (float16 rounds weights to 11 bits);
#: int8 is optional and only reported (its figures are in export.json), never refused
PARITY_MIN: dict[str, float] = {"litert_float16": 0.99, "litert_int8": 0.0}
PARITY_DEFAULT_MIN = 0.995
#: the quick profile's synthetic faces: their test split is the parity set
PARITY_SEED, PARITY_COUNT, PARITY_SIZE = 0, 400, 256
EXPORT_JSON = "export.json"


# ------------------------------------------------------------------------------------ runtimes
class ExportedModel:
    """An exported file behind the Keras calls that :func:`~facesegm_utils.prediction.predict_proba` uses."""

    def __init__(self, path: Path, size: int, run: Callable[[np.ndarray], np.ndarray]) -> None:
        self.path, self._run = path, run
        self.input_shape = (None, size, size, 3)
        self.output_shape = (None, size, size, NUM_CLASSES)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return np.concatenate([self._run(x[i : i + 1]) for i in range(len(x))])


def _onnx_runner(path: Path, threads: int | None) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    # threads that spin while waiting for work cost 5x on a CPU shared with other jobs (measured here)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return int(sess.get_inputs()[0].shape[1]), lambda x: sess.run(None, {name: x})[0]


def _litert_runner(path: Path, threads: int | None) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        it.set_tensor(inp["index"], x)
        it.invoke()
        return it.get_tensor(out["index"]).copy()

    return int(inp["shape"][1]), run


def _savedmodel_runner(path: Path, threads: int | None) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    spec = next(iter(fn.structured_input_signature[1].values()))
    return int(spec.shape[1]), lambda x: next(iter(fn(tf.constant(x)).values())).numpy()


def load_exported(path: str | os.PathLike[str], threads: int | None = None) -> ExportedModel:
    """An exported ``.onnx``, ``.tflite`` or SavedModel folder, ready for ``predict_proba``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"exported model not found: {path}")
    if path.suffix == ".onnx":
        size, run = _onnx_runner(path, threads)
    elif path.suffix == ".tflite":
        size, run = _litert_runner(path, threads)
    elif path.is_dir() and (path / "saved_model.pb").is_file():
        size, run = _savedmodel_runner(path, threads)
    else:
        raise FacesegmError(
            f"cannot load {path}: expected a .onnx file, a .tflite file or a SavedModel folder"
        )
    return ExportedModel(path, size, run)


# -------------------------------------------------------------------------------------- parity
def parity_face_ids(split: str = "test") -> list[int]:
    """The ids of the quick profile's synthetic faces (seed 0, 400 faces) in ``split`` (official split)."""
    from facesegm_utils.layout import official_split_of
    from facesegm_utils.synthetic import orig_index

    return [k for k in range(PARITY_COUNT) if official_split_of(orig_index(PARITY_SEED, k)) == split]


def parity_faces(size: int, count: int = 16, split: str = "test") -> list[np.ndarray]:
    """The first ``count`` faces of the quick profile's synthetic ``split``, at ``size`` x ``size``
    (the test faces check parity; int8 calibrates on training faces, never on the faces it is checked on)."""
    from facesegm_utils.prediction import resize_image
    from facesegm_utils.synthetic import generate_face

    faces = [generate_face(PARITY_SEED, k, PARITY_SIZE)[0] for k in parity_face_ids(split)[:count]]
    return [resize_image(f, size) for f in faces]


def parity(reference: Any, other: Any, images: Sequence[np.ndarray]) -> dict[str, float | int]:
    """Per-pixel argmax agreement and the largest probability difference of ``other`` against
    ``reference`` (both models that :func:`~facesegm_utils.prediction.predict_proba` takes)."""
    from facesegm_utils.prediction import predict_proba

    agree, pixels, worst = 0, 0, 0.0
    for image in images:  # one at a time: a batch of 512² probabilities is large
        p, q = predict_proba(reference, [image])[0], predict_proba(other, [image])[0]
        agree += int((p.argmax(2) == q.argmax(2)).sum())
        pixels += p.shape[0] * p.shape[1]
        worst = max(worst, float(np.abs(p - q).max()))
    return {"argmax_agreement": agree / max(pixels, 1), "max_prob_diff": worst, "images": len(images)}


def below_bar(manifest: dict[str, Any]) -> list[str]:
    """The variants in ``export.json`` whose argmax agreement is under their bar (:data:`PARITY_MIN`)."""
    return [
        v
        for v, fig in manifest["parity"].items()
        if fig["argmax_agreement"] < PARITY_MIN.get(v, PARITY_DEFAULT_MIN)
    ]


def latency_ms(models: dict[str, Any], size: int, rounds: int = 5, calls: int = 3) -> dict[str, float]:
    """Median milliseconds per image of each model's ``predict_on_batch`` on one random ``size``²
    image, the models interleaved over ``rounds`` of ``calls`` calls (so load changes hit all alike)."""
    import statistics

    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            model.predict_on_batch(x)  # warm-up: first calls build kernels and caches
            start = time.perf_counter()
            for _ in range(calls):
                model.predict_on_batch(x)
            times[name].append(1000 * (time.perf_counter() - start) / calls)
    return {name: statistics.median(t) for name, t in times.items()}


def parity_table(manifest: dict[str, Any]) -> str:
    """A Markdown table of ``export.json``'s files: size, argmax agreement, largest probability difference."""
    rows = [
        "| file | variant | MB | argmax agreement with Keras | largest probability difference |",
        "|---|---|---:|---:|---:|",
    ]
    for name, info in manifest["files"].items():
        fig = manifest["parity"][info["variant"]]
        rows.append(
            f"| `{name}` | {info['variant']} | {info['bytes'] / 1e6:.2f} | "
            f"{fig['argmax_agreement']:.4%} | {fig['max_prob_diff']:.1e} |"
        )
    return "\n".join(rows)


# -------------------------------------------------------------------------------------- export
def check_out(out: str | os.PathLike[str]) -> Path:
    """The output folder (created); ``FacesegmError`` when the path is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FacesegmError(f"output folder {out} is a file; expected a folder (new or existing)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_variant(model: Any, variant: str, path: Path, images: Sequence[np.ndarray]) -> None:
    """Write ``model`` as ``variant`` (a name in :data:`FILES` or :data:`INT8`) to ``path``: under a
    temporary name, then renamed (never half written). ``images`` calibrate the int8 variant."""
    import shutil

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet():
        _export(model, variant, tmp, images)
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(tmp, path)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the converters' chatter (tf2onnx's numpy FutureWarning, TensorFlow's "Assets written"
    INFO lines) out of the output while exporting; the logger's level is restored after."""
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _export(model: Any, variant: str, tmp: Path, images: Sequence[np.ndarray]) -> None:
    import tensorflow as tf

    if variant == "onnx":
        model.export(str(tmp), format="onnx", verbose=False)
    elif variant == "savedmodel":
        model.export(str(tmp), format="tf_saved_model", verbose=False)
    else:
        kwargs: dict[str, Any] = {}
        if variant != "litert_float32":
            kwargs["optimizations"] = [tf.lite.Optimize.DEFAULT]
        if variant == "litert_float16":
            kwargs["target_spec"] = {"supported_types": [tf.float16]}
        if variant == "litert_int8":
            kwargs["representative_dataset"] = lambda: ([im[None].astype(np.float32)] for im in images)
        model.export(str(tmp), format="litert", verbose=False, **kwargs)


def file_digest(path: Path) -> dict[str, Any]:
    """SHA-256 and size of a file, or of a folder's files in sorted order (names included)."""
    h, size = hashlib.sha256(), 0
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        data = f.read_bytes()
        h.update(data)
        size += len(data)
    return {"sha256": h.hexdigest(), "bytes": size}


def _manifest(out: Path, source: Path, size: int) -> dict[str, Any]:
    """``export.json`` as it stands (kept when it describes the same source model), else a new one."""
    source_hash = file_digest(source)["sha256"]
    path = out / EXPORT_JSON
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("source", {}).get("sha256") == source_hash:
            return old
    return {
        "source": {"model": str(source), "sha256": source_hash},
        "input": {
            "name": "image",
            "shape": [1, size, size, 3],
            "layout": "NHWC",
            "dtype": "float32",
            "color": "RGB",
            "range": [0, 255],
        },
        "output": {
            "shape": [1, size, size, NUM_CLASSES],
            "layout": "NHWC",
            "dtype": "float32",
            "kind": "logits (softmax over the last axis gives probabilities)",
        },
        "classes": list(CLASSES),
        "palette": PALETTE.tolist(),
        "files": {},
        "parity": {},
    }


def export_model(
    model_path: str | os.PathLike[str],
    fmt: str,
    out: str | os.PathLike[str],
    *,
    int8: bool = False,
    faces: int = 16,
    strict: bool = True,
) -> dict[str, Any]:
    """Export the run or ``.keras`` file ``model_path`` as ``fmt`` into ``out``; return ``export.json``.

    Each variant's parity with Keras is measured on ``faces`` synthetic test faces; a variant below
    its bar (:data:`PARITY_MIN`) raises ``FacesegmError`` after ``export.json`` records it (with
    ``strict=False`` it is only recorded: :func:`below_bar` lists such variants).
    """
    from facesegm_utils.prediction import input_size, load

    if fmt not in FORMATS:
        raise FacesegmError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    source = Path(model_path)
    source = source / "model.keras" if source.is_dir() else source
    model = load(source)
    out = check_out(out)
    size = input_size(model)
    model(np.zeros((1, size, size, 3), np.float32))  # a loaded model must be called once before export
    manifest = _manifest(out, source, size)
    images = parity_faces(size, faces)
    variants = dict(FILES[fmt])
    if int8 and fmt == "litert":
        variants[INT8[0]] = INT8[1]
    calibration = parity_faces(size, faces, split="train") if INT8[0] in variants else []
    for variant, name in variants.items():
        start = time.perf_counter()
        write_variant(model, variant, out / name, calibration)
        seconds = time.perf_counter() - start
        manifest["files"][name] = {"variant": variant, **file_digest(out / name)}
        figures = parity(model, load_exported(out / name), images)
        manifest["parity"][variant] = {**figures, "export_s": round(seconds, 2)}
    atomic_write_json(out / EXPORT_JSON, manifest)
    failed = [
        f"{v} {manifest['parity'][v]['argmax_agreement']:.4f}" for v in below_bar(manifest) if v in variants
    ]
    if failed and strict:
        raise FacesegmError(
            f"exported files below their parity bar: {', '.join(failed)} (see {out / EXPORT_JSON})"
        )
    return manifest


# ----------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a run folder (holding model.keras) or a .keras file")
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--out", required=True, help="output folder (created; export.json goes there too)")
    parser.add_argument(
        "--int8", action="store_true", help="litert only: also an int8 file (parity reported)"
    )
    parser.add_argument("--faces", type=int, default=16, help="synthetic test faces for the parity check")


def run_cli(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise FacesegmError(f"unknown export format {args.format!r}; expected one of {', '.join(FORMATS)}")
    if not Path(args.model).exists():
        raise FileNotFoundError(f"model not found: {args.model} (expected a run folder or a .keras file)")
    if args.int8 and args.format != "litert":
        raise FacesegmError(f"--int8 applies to --format litert only, not {args.format!r}")
    if args.faces < 1:
        raise FacesegmError(f"--faces must be at least 1, got {args.faces}")
    check_out(args.out)
    manifest = export_model(args.model, args.format, args.out, int8=args.int8, faces=args.faces)
    for name, info in manifest["files"].items():
        fig = manifest["parity"][info["variant"]]
        print(
            f"{Path(args.out) / name}: {info['bytes'] / 1e6:.2f} MB, argmax agreement "
            f"{fig['argmax_agreement']:.4%}, largest probability difference {fig['max_prob_diff']:.2e}"
        )
    return 0
