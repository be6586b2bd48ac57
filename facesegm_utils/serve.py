"""``facesegm serve --model RUN``: the live recolour page (``web/``) for a model, on 127.0.0.1.

The page is static: ``web/index.html`` with two JavaScript modules, onnxruntime-web from
``web/node_modules`` (``make web`` installs it from the lockfile), and the model at ``/model/``:
the run's ONNX export (made first when missing or older than the model). The server only sends
files, with the two headers that make the page cross-origin isolated, which multi-threaded
WebAssembly needs (``SharedArrayBuffer``): COOP ``same-origin`` and COEP ``require-corp``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facesegm_utils.export import EXPORT_JSON, export_model, file_digest
from facesegm_utils.fileio import FacesegmError, atomic_write_bytes

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
ORT_DIST = Path("node_modules") / "onnxruntime-web" / "dist"
HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cache-Control": "no-store",
}
TYPES = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
}


class PageHandler(http.server.SimpleHTTPRequestHandler):
    """Files of ``web/``, and ``/model/NAME`` from the export folder; COOP/COEP on every answer."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def __init__(self, *args: object, web: Path, model_dir: Path, **kwargs: object) -> None:
        self.model_dir = model_dir
        super().__init__(*args, directory=str(web), **kwargs)  # type: ignore[arg-type]

    def translate_path(self, path: str) -> str:
        if path.split("?")[0].startswith("/model/"):
            name = Path(path.split("?")[0]).name
            return str(self.model_dir / name)
        return super().translate_path(path)

    def end_headers(self) -> None:
        for key, value in HEADERS.items():
            self.send_header(key, value)
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def ensure_onnx(model: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """The export folder holding ``model.onnx`` for ``model`` (a run folder or ``.keras`` file),
    exported first when missing or made from another version of the model."""
    source = Path(model)
    if not source.exists():
        raise FileNotFoundError(f"model not found: {source} (expected a run folder or a .keras file)")
    keras_file = source / "model.keras" if source.is_dir() else source
    folder = Path(out) if out is not None else (source if source.is_dir() else source.parent) / "export"
    manifest = folder / EXPORT_JSON
    if (folder / "model.onnx").is_file() and manifest.is_file():
        recorded = json.loads(manifest.read_text()).get("source", {}).get("sha256")
        if (
            recorded == file_digest(keras_file)["sha256"]
            and "model.onnx" in json.loads(manifest.read_text())["files"]
        ):
            return folder
    export_model(source, "onnx", folder)
    return folder


def make_server(
    model_dir: str | os.PathLike[str], port: int = 8000, web: Path = WEB_DIR
) -> http.server.ThreadingHTTPServer:
    """A server (not yet serving) for ``web`` and the model in ``model_dir`` on 127.0.0.1:``port``
    (0 picks a free port)."""
    if not (web / ORT_DIST).is_dir():
        raise FacesegmError(f"{web / ORT_DIST} is missing: run `make web` (npm ci in web/) first")
    handler = functools.partial(PageHandler, web=web, model_dir=Path(model_dir))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def serve_in_thread(
    model_dir: str | os.PathLike[str], port: int = 0, web: Path = WEB_DIR
) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start serving in a daemon thread; the server (``shutdown()`` it) and the page's URL."""
    server = make_server(model_dir, port, web)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def write_y4m(path: str | os.PathLike[str], frames: Sequence[np.ndarray], fps: int = 30) -> Path:
    """Write RGB uint8 frames (all one even size) as a Y4M clip (YUV 4:2:0), the format Chromium's
    fake camera plays (``--use-file-for-fake-video-capture=PATH``): the page can be tried without one."""
    import cv2

    h, w = frames[0].shape[:2]
    if h % 2 or w % 2 or any(f.shape != (h, w, 3) or f.dtype != np.uint8 for f in frames):
        raise ValueError(f"expected RGB uint8 frames of one even size, got {[f.shape for f in frames]}")
    header = f"YUV4MPEG2 W{w} H{h} F{int(fps)}:1 Ip A1:1 C420jpeg\n".encode()
    data = b"".join(b"FRAME\n" + cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420).tobytes() for f in frames)
    return atomic_write_bytes(path, header + data, fsync=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a run folder (holding model.keras) or a .keras file")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    parser.add_argument("--export-dir", default=None, help="where the ONNX export lives (default RUN/export)")


def run_cli(args: argparse.Namespace) -> int:
    folder = ensure_onnx(args.model, args.export_dir)
    server = make_server(folder, args.port)
    print(
        f"serving the recolour page on http://127.0.0.1:{server.server_address[1]}/ (Ctrl+C stops)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
