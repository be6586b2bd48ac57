"""Faces in wide frames: CelebA-HQ alignment, detection, parsing in the crop and pasting back.

Most tests use a stand-in model that answers each crop with the labels of the nearest known crop,
so they check the geometry (detection, the crop, the warp back, the fallbacks) without a trained
network; the slow test at the end parses with the quick course's trained model.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesegm_utils import align, detect, prediction, synthetic
from facesegm_utils.celebamask import merge_parts
from facesegm_utils.inference import FaceParser
from facesegm_utils.labels import NUM_CLASSES
from facesegm_utils.metrics import ConfusionMatrix

S = 128  # the stand-in model's input size
FACE = 192  # synthetic faces are drawn at this size
GREY = (128, 128, 128)


def synthetic_face(index: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, masks = synthetic.generate_face(seed, index, FACE)
    return image, merge_parts(masks), synthetic.face_landmarks(seed, index, FACE)


class NearestCrop:
    """A stand-in model: each input gets the labels of the nearest template (mean |difference|)."""

    def __init__(self, templates: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.templates = templates
        self.input_shape = (None, S, S, 3)
        self.output_shape = (None, S, S, NUM_CLASSES)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        out = []
        for im in x:
            best = min(self.templates, key=lambda t: float(np.abs(im - t[0]).mean()))
            out.append(np.eye(NUM_CLASSES, dtype=np.float32)[best[1]] * 20.0)
        return np.stack(out)


def template(
    image: np.ndarray, labels: np.ndarray, landmarks: np.ndarray, detected: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A face's CelebA-HQ crop at the model size and its labels (what a perfect model would answer),
    from the landmarks MTCNN finds in the face image itself (so its small errors mostly cancel
    out), or from the true ``landmarks``. With true landmarks everywhere, a 128 model size keeps
    about 0.92 of a face's pixels right after the round trip (labels at 128, warped back)."""
    if detected:
        (face,) = detect.detect_faces(image)
        assert np.abs(face.landmarks - landmarks).max() < 0.05 * len(image)
        landmarks = face.landmarks
    m = align.crop_transform(landmarks, S)
    crop_labels = cv2.warpAffine(
        labels, m, (S, S), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101
    )
    return align.warp_crop(image, m, S), crop_labels


def blank() -> tuple[np.ndarray, np.ndarray]:
    return np.full((S, S, 3), 128.0, np.float32), np.zeros((S, S), np.uint8)


def miou(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(ConfusionMatrix().update(truth, pred).mean_iou())


def test_crop_follows_the_face_under_rotation_scale_and_shift() -> None:
    """The CelebA-HQ crop is equivariant: move the face by a similarity, the crop moves with it."""
    lm = synthetic_face(0)[2]
    t = cv2.getRotationMatrix2D((40.0, 30.0), 15.0, 0.6)
    t[:, 2] += (200.0, 90.0)
    moved = lm @ t[:, :2].T + t[:, 2]
    t3 = np.vstack([t, [0, 0, 1]])
    expected = align.crop_transform(lm, S) @ np.linalg.inv(t3)
    np.testing.assert_allclose(align.crop_transform(moved, S), expected, atol=1e-6)
    with pytest.raises(ValueError, match="five finite"):
        align.crop_transform(np.zeros((4, 2)), S)


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_alignment_of_an_aligned_face_is_close_to_the_identity(photo: str) -> None:
    """A photo a dependency ships, cropped the CelebA-HQ way, comes out of the detector + crop unchanged."""
    if photo == "astronaut":
        import skimage.data

        image = skimage.data.astronaut()
    else:
        import matplotlib.cbook
        import matplotlib.image

        image = matplotlib.image.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg"))
    face = detect.detect_faces(image)[0]
    aligned = align.warp_crop(image, align.crop_transform(face.landmarks, 256), 256)
    again = detect.detect_faces(aligned)
    assert len(again) == 1
    err = align.transform_error(align.crop_transform(again[0].landmarks, 256), 256, 256)
    assert abs(err["scale"] - 1) < 0.05 and abs(err["rotation_deg"]) < 3 and err["shift"] < 0.03, err
    # the optional second look, in the face's own upright crop, lands near the first one
    eyes = np.hypot(*(face.landmarks[1] - face.landmarks[0]))
    assert np.abs(align.find_landmarks(image, refine=True)[0] - face.landmarks).max() < 0.15 * eyes


def test_face_at_30_percent_tilted_15_degrees_recovers_its_labels() -> None:
    image, labels, lm = synthetic_face(0)
    frame, truth, _ = align.place_face(image, labels, lm, (360, 640), 0.3, 15.0, (420, 170), GREY)
    model = NearestCrop([template(image, labels, lm), blank()])
    aligned = FaceParser(model).predict_labels(frame)
    whole = FaceParser(model, align="none").predict_labels(frame)
    face_only = truth > 0
    assert miou(truth, aligned) > 0.6
    assert (aligned[face_only] == truth[face_only]).mean() > 0.8
    assert (whole[face_only] == truth[face_only]).mean() < 0.5  # the frame squeezed to the model's square


def test_two_faces_are_both_parsed() -> None:
    faces = [synthetic_face(i) for i in (0, 3)]
    scene = None
    for (image, labels, lm), (angle, centre) in zip(
        faces, [(-10.0, (170, 180)), (12.0, (470, 190))], strict=True
    ):
        frame, truth, _ = align.place_face(
            image, labels, lm, (360, 640), 0.45, angle, centre, GREY, onto=scene
        )
        scene = (frame, truth)
    assert len(detect.detect_faces(frame)) == 2
    pred = FaceParser(NearestCrop([template(*f) for f in faces] + [blank()])).predict_labels(frame)
    for half in (slice(0, 320), slice(320, 640)):
        t, p = truth[:, half], pred[:, half]
        assert (p[t > 0] == t[t > 0]).mean() > 0.6  # a face left unparsed scores about 0


def test_no_face_falls_back_to_the_whole_frame_with_a_notice(capsys: pytest.CaptureFixture[str]) -> None:
    yy, xx = np.mgrid[0:90, 0:160]
    frame = np.stack([xx, yy, xx + yy], axis=2).astype(np.uint8)
    model = NearestCrop([blank(), (np.full((S, S, 3), 60.0, np.float32), np.ones((S, S), np.uint8))])
    auto = FaceParser(model).predict_proba(frame)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no face found in a 160x90 image" in err
    np.testing.assert_array_equal(auto, FaceParser(model, align="none").predict_proba(frame))


def test_face_at_the_border_is_padded_by_reflection_and_pasted_back() -> None:
    image, labels, lm = synthetic_face(3)
    frame, truth, marks = align.place_face(image, labels, lm, (240, 320), 0.8, 0.0, (30, 120), GREY)
    m = align.crop_transform(marks, S)
    crop = align.warp_crop(frame, m, S)
    # the crop's left part lies beyond the frame: it mirrors what is inside
    inv = cv2.invertAffineTransform(m)
    assert inv[0, 2] < -0.5  # crop pixel (0, 0) is left of the frame
    padded = cv2.copyMakeBorder(frame, 200, 200, 200, 200, cv2.BORDER_REFLECT_101)
    shifted = m.copy()
    shifted[:, 2] -= 200 * (m[:, 0] + m[:, 1])
    np.testing.assert_allclose(crop, align.warp_crop(padded, shifted, S), atol=1e-2)
    model = NearestCrop([template(image, labels, lm, detected=False), blank()])
    proba = align.parse_faces(model, [frame], landmarks=[[marks]])[0]
    pred = np.argmax(proba, axis=2)
    assert (pred[truth > 0] == truth[truth > 0]).mean() > 0.8
    np.testing.assert_allclose(proba.sum(axis=2), 1.0, atol=1e-5)
    assert (pred[:, 200:][truth[:, 200:] == 0] == 0).mean() > 0.95  # outside the crop: background


def test_align_none_is_the_one_prediction_path_unchanged() -> None:
    image = synthetic_face(1)[0]
    model = NearestCrop([template(*synthetic_face(1)), blank()])
    ref = prediction.predict_proba(model, [image])[0]
    np.testing.assert_array_equal(FaceParser(model, align="none").predict_proba(image), ref)
    with pytest.raises(ValueError, match="unknown align"):
        FaceParser(model, align="yes")


def test_paste_back_keeps_probabilities_and_skips_crops_off_the_frame() -> None:
    m = align.crop_transform(synthetic_face(2)[2], S)
    proba = prediction.softmax(np.random.default_rng(0).normal(size=(S, S, NUM_CLASSES)))
    box, back, cover = align.paste_back(proba, m, (FACE, FACE))
    inside = cover > 0.999
    assert inside.mean() > 0.3
    np.testing.assert_allclose(back.sum(axis=2), cover, atol=1e-4)  # the crop's edge blends to nothing
    far = m.copy()
    far[:, 2] += 10 * FACE
    assert align.paste_back(proba, far, (FACE, FACE)) is None
    assert math.isclose(align.transform_error(np.diag([0.5, 0.5, 1.0])[:2], 128, 64)["scale"], 1.0)


@pytest.mark.slow
def test_trained_model_parses_a_face_in_a_frame_as_well_as_the_crop(quick_course: dict) -> None:
    """The quick course's model on unseen synthetic faces: aligned in a 1280x720 frame vs the crops.

    Faces 3 and 4 of seed 11 are left out: MTCNN does not find them in a frame (the generator draws
    some faces it misses; ``bench_wild`` reports that rate separately)."""
    model = prediction.load(Path(quick_course["out_dir"]) / "run" / "model.keras")
    aligned, whole = FaceParser(model), FaceParser(model, align="none")
    crop_cm, frame_cm, whole_cm = ConfusionMatrix(), ConfusionMatrix(), ConfusionMatrix()
    for i, angle in ((0, 15.0), (1, -15.0), (2, 10.0), (5, 5.0)):
        image, masks = synthetic.generate_face(11, i, 256)
        labels, lm = merge_parts(masks), synthetic.face_landmarks(11, i, 256)
        frame, truth, _ = align.place_face(image, labels, lm, (720, 1280), 0.45, angle, (520 + 40 * i, 360))
        crop_cm.update(labels, whole.predict_labels(image))
        frame_cm.update(truth, aligned.predict_labels(frame))
        whole_cm.update(truth, whole.predict_labels(frame))
    assert frame_cm.mean_iou() >= 0.8 * crop_cm.mean_iou()  # bench_wild: 0.93x over 13 faces
    # without alignment the same frames parse far worse (bench_wild: 0.19x the crops), whatever the model's level
    assert whole_cm.mean_iou() < 0.6 * frame_cm.mean_iou()


def test_a_video_without_a_face_gets_one_notice(capsys: pytest.CaptureFixture[str]) -> None:
    frames = [np.full((72, 128, 3), v, np.uint8) for v in (40, 60, 80, 100, 120)]
    parser = FaceParser(NearestCrop([blank()]), batch_size=2)
    maps = list(parser.iter_batches(frames, proba=True, video=True))
    assert len(maps) == 5 and capsys.readouterr().err.count("no face found") == 1
