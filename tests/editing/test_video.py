"""editing.video: H.264 round trips through the ffmpeg that imageio-ffmpeg ships, frame ranges, bad files."""

import numpy as np
import pytest

from common.errors import UserError
from editing.video import FrameRange, read_video, write_video


def moving_square(num_frames=6, size=32):
    frames = np.full((num_frames, size, size, 3), 40, np.uint8)
    for index in range(num_frames):
        frames[index, 8:20, 2 + 2 * index : 14 + 2 * index] = (230, 200, 30)
    return frames


def test_round_trip_keeps_frames_and_fps(tmp_path):
    frames = moving_square()
    path = write_video(tmp_path / "clip.mp4", frames, fps=12)
    read, fps = read_video(path)
    assert read.shape == frames.shape and fps == pytest.approx(12)
    assert np.abs(read.astype(int) - frames).mean() < 6
    assert not list(tmp_path.glob(".*tmp*"))  # written under a temporary name, then renamed


def test_odd_sizes_are_padded_to_even(tmp_path):
    read, _ = read_video(write_video(tmp_path / "odd.mp4", moving_square(3, 31), fps=10))
    assert read.shape == (3, 32, 32, 3)


def test_frame_range_picks_frames(tmp_path):
    path = write_video(tmp_path / "clip.mp4", moving_square(), fps=10)
    every_other, _ = read_video(path, FrameRange(1, 6, 2))
    everything, _ = read_video(path)
    assert len(every_other) == 3
    np.testing.assert_array_equal(every_other, everything[1:6:2])


def test_bad_videos_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="missing.mp4 not found"):
        read_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(UserError, match="cannot read video .*notes.mp4: ffmpeg could not decode it"):
        read_video(text)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(UserError, match="empty.mp4 is empty"):
        read_video(tmp_path / "empty.mp4")
    path = write_video(tmp_path / "clip.mp4", moving_square(), fps=10)
    with pytest.raises(UserError, match=r"frames.start=9 is outside video .* which has 6 frame\(s\)"):
        read_video(path, FrameRange(9))
    with pytest.raises(UserError, match=r"frames.stop=40 is outside"):
        read_video(path, FrameRange(0, 40))
