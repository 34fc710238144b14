"""dlib's box search on a shrunk copy (sized by the image or by the calibrated face size), its retries, and the aligned
mode's verified fixed box."""

import pickle

import dlib
import numpy as np
import pytest
import torch
from skimage import data

from backbones.landmarks import images_to_uint8
from backbones.landmarks.boxes import HogFaceFinder, scale_box
from backbones.landmarks.dlib import DlibDetector
from backbones.synthetic import SyntheticGenerator
from common.errors import UserError


def nme(landmarks: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, 68, 2) pixels -> (N,) mean point error over the truth's outer-eye-corner distance."""
    return np.linalg.norm(landmarks - truth, axis=-1).mean(-1) / np.linalg.norm(truth[:, 36] - truth[:, 45], axis=-1)


def render(resolution: int, seeds: np.ndarray, fixed_framing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic faces (N, R, R, 3) uint8 and their true landmarks (N, 68, 2); with `fixed_framing`
    every face has the mean framing (scale and shift), as in an aligned generator."""
    generator = SyntheticGenerator(img_resolution=resolution)
    with torch.no_grad():
        ws = generator.mapping(generator.z_from_seeds(seeds))
        if fixed_framing:
            ws[:, 4] = generator.w_avg  # row 4 is the framing
        return images_to_uint8(generator.synthesis(ws)), generator.ground_truth(ws)["landmarks"].numpy()


@pytest.fixture(scope="module")
def faces512():
    return render(512, np.arange(200, 206))


@pytest.fixture(scope="module")
def aligned_faces():
    return render(256, np.arange(300, 316), fixed_framing=True)


def test_shrink_factor_and_box_scaling():
    finder = HogFaceFinder(search_size=256)
    assert (
        finder.shrink_factor(256, 256) == 1
        and finder.shrink_factor(512, 512) == 2
        and finder.shrink_factor(1024, 700) == 4
    )
    assert finder.shrink_factor(1000, 1000) == 4 and HogFaceFinder(search_size=None).shrink_factor(1024, 1024) == 1
    sized = HogFaceFinder(search_size=256, search_face_px=150)
    assert (
        sized.needs_calibration and sized.shrink_factor(1024, 1024) == 4
    )  # by image size until the faces are measured
    sized.face_width = 0.45  # faces 461 px wide at 1024: a third of that is nearest to 150 px
    assert not sized.needs_calibration and sized.shrink_factor(1024, 1024) == 3 and sized.shrink_factor(256, 256) == 1
    box = scale_box(dlib.rectangle(10, 20, 29, 49), 4)  # pixels 10..29 of the copy are pixels 40..119 of the image
    assert (box.left(), box.top(), box.right(), box.bottom()) == (40, 80, 119, 199)


def test_small_search_is_as_accurate_as_full_resolution(faces512):
    images, truth = faces512
    small = DlibDetector().detect_uint8(images)
    full = DlibDetector(search_size=None).detect_uint8(images)
    assert small.found.all() and full.found.all()
    small_error, full_error = nme(small.landmarks.numpy(), truth), nme(full.landmarks.numpy(), truth)
    assert np.median(small_error) <= np.median(full_error) + 0.005
    assert np.median(torch.linalg.norm(small.landmarks - full.landmarks, dim=-1).mean(-1).numpy()) < 0.03 * 512


def test_calibrated_face_size_sets_the_copy_and_keeps_the_accuracy(faces512):
    images, truth = faces512
    detector = DlibDetector(search_face_px=100)
    assert detector.needs_calibration
    detector.calibrate(images)
    face_px = detector.calibration["face_width"] * 512
    factor = detector.search_factor(512, 512)
    assert not detector.needs_calibration and 150 < face_px < 400 and factor == round(face_px / 100) >= 2
    sized = detector.detect_uint8(images)
    full = DlibDetector(search_size=None, search_face_px=None).detect_uint8(images)
    assert sized.found.all() and full.found.all()
    sized_error, full_error = nme(sized.landmarks.numpy(), truth), nme(full.landmarks.numpy(), truth)
    assert np.median(sized_error) <= np.median(full_error) + 0.005
    copy = pickle.loads(pickle.dumps(detector))  # the sampling workers get the measured face size
    assert copy.calibration == detector.calibration and torch.equal(
        copy.detect_uint8(images).landmarks, sized.landmarks
    )


def test_a_face_smaller_than_calibrated_is_found_by_the_retries():
    # Calibrated on faces that fill the image: the 512-pixel astronaut photo is shrunk 3x, her ~130 px face is
    # ~43 px on that copy, too small for HOG without a doubling.
    photo = data.astronaut()
    finder = HogFaceFinder(upsample=0, max_upsample=1, search_face_px=150)
    finder.face_width = 1.0
    assert finder.shrink_factor(512, 512) == 3
    box, _ = finder.find(photo)
    assert 150 < (box.left() + box.right()) / 2 < 300 and box.width() > 80


def test_calibration_without_faces_keeps_the_search_by_image_size():
    detector = DlibDetector()
    detector.calibrate(np.zeros((2, 64, 64, 3), np.uint8))
    assert detector.calibration == {"face_box": None, "face_width": None}
    assert detector.search_factor(1024, 1024) == 4


def test_a_face_too_small_for_the_copy_is_found_by_the_retries():
    # The astronaut's face is ~65 px on the 256-pixel copy of the 512-pixel photo: below HOG's ~80 px.
    photo = data.astronaut()
    finder = HogFaceFinder(upsample=0, max_upsample=1)
    copy = photo.reshape(256, 2, 256, 2, 3).mean((1, 3)).round().astype(np.uint8)
    assert finder.shrink_factor(512, 512) == 2 and finder.best_box(copy, 0) is None
    doubled, _ = finder.find(photo)  # found on the copy doubled once
    full, _ = HogFaceFinder(upsample=0, max_upsample=0).find(photo)  # found on the full image
    for box in (doubled, full):
        assert 150 < (box.left() + box.right()) / 2 < 300 and box.width() > 80


def test_aligned_fit_matches_detection_and_rejects_what_moved(aligned_faces):
    images, truth = aligned_faces
    detector = DlibDetector(aligned=True)
    assert detector.needs_calibration
    with pytest.raises(ValueError, match="needs a face box"):
        detector.detect_uint8(images[:1])
    detector.calibrate(images[:8])
    box = detector.face_box
    assert not detector.needs_calibration and 0 < box[0] < box[2] < 1 and 0 < box[1] < box[3] < 1
    aligned, searched = detector.detect_uint8(images), DlibDetector().detect_uint8(images)
    both = (aligned.found & searched.found).numpy()
    assert both.mean() >= 0.8 and (aligned.found | ~searched.found).all()  # every face the search finds is found
    verified = np.array([detector.verified_fit(image) is not None for image in images])
    assert verified.mean() >= 0.3
    aligned_error, searched_error = (
        nme(aligned.landmarks.numpy()[both], truth[both]),
        nme(searched.landmarks.numpy()[both], truth[both]),
    )
    assert np.median(aligned_error) <= np.median(searched_error) + 0.005
    # A blank image and a face moved by a quarter of the image fail the check and go to the search.
    blank, moved = np.zeros_like(images[0]), np.roll(images[0], images.shape[2] // 4, axis=1)
    assert detector.verified_fit(blank) is None and detector.verified_fit(moved) is None
    result = detector.detect_uint8(np.stack([blank, moved]))
    assert result.found.tolist() == [False, True]
    assert torch.equal(result.landmarks[1], DlibDetector().detect_uint8(moved[None]).landmarks[0])


def test_calibrated_box_travels_with_the_pickled_detector(aligned_faces):
    images, _ = aligned_faces
    detector = DlibDetector(aligned=True)
    detector.calibrate(images[:8])
    copy = pickle.loads(pickle.dumps(detector))
    assert copy.calibration == detector.calibration and copy.aligned
    assert torch.equal(copy.detect_uint8(images[8:12]).landmarks, detector.detect_uint8(images[8:12]).landmarks)


def test_calibration_without_faces_is_a_user_error():
    with pytest.raises(UserError, match="no face found in any of the 2 calibration images"):
        DlibDetector(aligned=True).calibrate(np.zeros((2, 64, 64, 3), np.uint8))


def test_sampling_stage_calibrates_an_aligned_detector(tmp_path):
    from sampling.dataset import read_samples
    from sampling.sample import sample_dataset

    generator = SyntheticGenerator(img_resolution=192).freeze()
    detector = DlibDetector(aligned=True)
    out = sample_dataset(
        generator, detector, tmp_path / "samples.h5", 40, 3, batch_size=3, chunk_size=3, num_workers=0, progress=False
    )
    assert not detector.needs_calibration
    calibration = DlibDetector(aligned=True)
    calibration.calibrate(images_to_uint8(generator.synthesis(generator.mapping(generator.z_from_seeds(np.arange(8))))))
    assert detector.face_box == calibration.face_box  # seeds 0..7, whatever the run's seeds
    samples = read_samples(out)
    assert samples.found.sum() >= 2
