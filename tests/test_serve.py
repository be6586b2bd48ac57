"""facesegm serve: headers for cross-origin isolation, the model under /model/, clips for a fake camera."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesegm_utils import cli, export, serve


def test_page_files_and_model_are_served_with_coop_coep(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / serve.ORT_DIST).mkdir(parents=True)
    (web / "index.html").write_text("<p>page</p>")
    (web / "model.js").write_text("export {};")
    models = tmp_path / "export"
    models.mkdir()
    (models / export.EXPORT_JSON).write_text('{"input": {}}')
    server, url = serve.serve_in_thread(models, 0, web=web)
    try:
        for path, body, kind in (
            ("", b"<p>page</p>", "text/html"),
            ("model.js", b"export {};", "text/javascript"),
            ("model/export.json", b'{"input": {}}', "application/json"),
        ):
            with urllib.request.urlopen(url + path) as answer:
                assert answer.read() == body
                assert answer.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert answer.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
                assert answer.headers["Content-Type"].startswith(kind)
    finally:
        server.shutdown()
        server.server_close()


def test_without_node_modules_the_error_says_make_web(tmp_path: Path) -> None:
    with pytest.raises(serve.FacesegmError, match="make web"):
        serve.make_server(tmp_path, 0, web=tmp_path)


def test_serve_exits_2_for_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert "model not found" in err and len(err.splitlines()) == 1


def test_y4m_clip_holds_each_frame_in_yuv420(tmp_path: Path) -> None:
    frames = [np.full((8, 6, 3), v, np.uint8) for v in (10, 200)]
    data = serve.write_y4m(tmp_path / "c.y4m", frames, fps=15).read_bytes()
    header, rest = data.split(b"\n", 1)
    assert header == b"YUV4MPEG2 W6 H8 F15:1 Ip A1:1 C420jpeg"
    chunks = rest.split(b"FRAME\n")[1:]
    assert [len(c) for c in chunks] == [6 * 8 * 3 // 2] * 2
    back = cv2.cvtColor(np.frombuffer(chunks[1], np.uint8).reshape(12, 6), cv2.COLOR_YUV2RGB_I420)
    assert np.abs(back.astype(int) - 200).max() <= 2
    with pytest.raises(ValueError, match="even size"):
        serve.write_y4m(tmp_path / "odd.y4m", [np.zeros((7, 6, 3), np.uint8)])
