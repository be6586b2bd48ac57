"""The live recolour page (web/) in Chromium with a fake camera playing a synthetic face.

The page runs the tiny model's ONNX export with onnxruntime-web; its mask must agree with Python's
prediction for the same crop, its recolouring must touch the hair and nothing outside the part, and it
must work offline (no request leaves 127.0.0.1) without console errors. Needs Chromium, Playwright and
``make web`` (skipped without them; with ``CI=true`` a failure). Saves ``docs/web_page.png``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_lab import CHROMIUM, LAUNCH_ARGS, _browser_or_skip

from facesegm_utils import course, export, recolor, serve
from facesegm_utils.labels import class_id
from facesegm_utils.synthetic import generate_face

SCREENSHOT = course.REPO_ROOT / "docs" / "web_page.png"
CLIP_SIZE = 256
#: a face from the quick profile's synthetic test split, the one the camera shows
FACE = 3


def _node_modules_or_skip() -> None:
    if (serve.WEB_DIR / serve.ORT_DIST).is_dir():
        return
    reason = "web/node_modules is missing: `make web` installs onnxruntime-web from the lockfile"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the page cannot be served: {reason}")
    pytest.skip(reason)


def _labels_agreement(page_labels: np.ndarray, rgba: np.ndarray, keras_model: object) -> float:
    from facesegm_utils.prediction import predict_labels

    python = predict_labels(keras_model, [rgba[..., :3]])[0]
    return float(np.mean(python == page_labels))


def _snapshot(page: object) -> dict[str, np.ndarray]:
    """The page's last frame (``window.facesegm.snapshot()``: typed arrays as base64)."""
    snap = page.evaluate("window.facesegm.snapshot()")
    size, side = snap["size"], snap["side"]

    def array(key: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        return np.frombuffer(base64.b64decode(snap[key]), dtype).reshape(shape)

    return {
        "input": array("input", np.uint8, (size, size, 4)),
        "labels": array("labels", np.uint8, (size, size)),
        "before": array("before", np.uint8, (side, side, 4)),
        "after": array("after", np.uint8, (side, side, 4)),
        "weight": array("weight", np.float32, (side, side)),
    }


@pytest.fixture(scope="module")
def session(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory):
    """The page served for the tiny model, open in Chromium with the fake camera; what it logged."""
    _browser_or_skip()
    _node_modules_or_skip()
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("web")
    face_id = export.parity_face_ids()[FACE]
    frame = generate_face(export.PARITY_SEED, face_id, CLIP_SIZE)[0]
    clip = serve.write_y4m(tmp / "face.y4m", [frame])
    server, url = serve.serve_in_thread(serve.ensure_onnx(tiny_run, tmp / "export"))
    fake_camera = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]
    log: dict[str, list[str]] = {"errors": [], "outside": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*LAUNCH_ARGS, *fake_camera])
        page = browser.new_page(viewport={"width": 1000, "height": 720})
        page.on("console", lambda m: log["errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: log["errors"].append(str(e)))
        page.on(
            "request",
            lambda r: None if r.url.startswith((url, "data:", "blob:")) else log["outside"].append(r.url),
        )
        page.goto(url)
        page.wait_for_function(
            "document.body.dataset.fps || document.body.dataset.state === 'error'", timeout=60_000
        )
        yield {"page": page, "frame": frame, "tmp": tmp, "log": log, "model": tiny_run}
        browser.close()
    server.shutdown()


@pytest.fixture(scope="module")
def keras_model(tiny_run: Path):
    from facesegm_utils.prediction import load

    return load(tiny_run)


@pytest.mark.slow
@pytest.mark.browser
def test_camera_frame_mask_matches_python_and_recolours_only_the_hair(session, keras_model) -> None:
    page = session["page"]
    assert page.evaluate("document.body.dataset.state") == "camera", page.inner_text("#status")
    assert page.evaluate("crossOriginIsolated"), "COOP/COEP headers missing: threaded wasm needs them"
    shown, recorded = page.evaluate("[document.getElementById('fps').value, document.body.dataset.fps]")
    assert float(shown) > 0 and shown == recorded
    snap = _snapshot(page)
    size = snap["input"].shape[0]
    # the model saw the camera frame (a square clip: its crop is the whole frame)
    expected = cv2.resize(session["frame"], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    assert np.abs(snap["input"][..., :3] - expected).mean() < 10
    assert _labels_agreement(snap["labels"], snap["input"], keras_model) >= 0.99
    # recolouring: hair pixels change, pixels outside the part stay bit-for-bit the same
    hair = (
        cv2.resize(
            (snap["labels"] == class_id("hair")).astype(np.uint8),
            snap["weight"].shape[::-1],
            interpolation=cv2.INTER_NEAREST,
        )
        > 0
    )
    diff = np.abs(snap["after"].astype(int) - snap["before"].astype(int))[..., :3].max(axis=2)
    assert hair.mean() > 0.02, "the clip's face has hair"
    assert (diff[hair & (snap["weight"] > 0.5)] > 0).mean() > 0.9
    assert (diff[snap["weight"] == 0] == 0).all()
    # the page's colour maths (colour.js) is Python's recolor: same image, weight, colour and strength
    colour, strength = page.evaluate(
        "[document.getElementById('colour').value, document.getElementById('strength').value]"
    )
    python = recolor.recolor(
        np.ascontiguousarray(snap["before"][..., :3]), snap["weight"], colour, float(strength)
    )
    gap = np.abs(python.astype(int) - snap["after"][..., :3].astype(int))
    assert gap.mean() < 1.0 and np.percentile(gap, 99.9) <= 3, (gap.mean(), gap.max())
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))


@pytest.mark.slow
@pytest.mark.browser
def test_a_chosen_photo_is_centre_cropped_and_parsed(session, keras_model) -> None:
    page, tmp = session["page"], session["tmp"]
    face = generate_face(export.PARITY_SEED, 7, 200)[0]
    photo = cv2.copyMakeBorder(face, 0, 0, 60, 40, cv2.BORDER_CONSTANT, value=(90, 90, 90))  # 300 x 200
    path = tmp / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    page.set_input_files("#photo", str(path))
    page.wait_for_function("document.body.dataset.photos === '1'", timeout=30_000)
    snap = _snapshot(page)
    size = snap["input"].shape[0]
    crop = photo[:, 50:250]  # the centred 200 x 200 square
    expected = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    assert np.abs(snap["input"][..., :3] - expected).mean() < 10
    assert _labels_agreement(snap["labels"], snap["input"], keras_model) >= 0.99
    # a control change re-renders the photo: lips now, and still nothing outside the part changes
    page.select_option("#part", "lips")
    page.wait_for_function("document.body.dataset.photos === '2'", timeout=30_000)
    snap = _snapshot(page)
    diff = np.abs(snap["after"].astype(int) - snap["before"].astype(int)).max(axis=2)
    assert (diff[snap["weight"] == 0] == 0).all()


@pytest.mark.slow
@pytest.mark.browser
def test_no_console_errors_and_nothing_leaves_localhost(session) -> None:
    assert session["log"]["errors"] == []
    assert session["log"]["outside"] == []
