import re

import numpy as np
import pytest

from fusionframes import FusionFramesError
from fusionframes.video_io import read_video, write_video


def test_round_trip_keeps_frames_and_pads_odd_sizes(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (5, 1, 1, 3), dtype=np.uint8), 16 * 15, axis=1).reshape(5, 16, 15, 3)
    back = read_video(write_video(frames, tmp_path / "v.mp4", fps=8))
    assert back.shape == (5, 16, 16, 3)
    assert np.abs(back[:, :, :15].astype(int) - frames).mean() < 6  # flat colours survive H.264 nearly exactly


@pytest.mark.parametrize("frames, name, message", [
    (np.zeros((2, 8, 8), np.uint8), "a.mp4", "uint8 (frames, height, width, 3)"),
    (np.zeros((2, 8, 8, 3), np.float32), "a.mp4", "uint8 (frames, height, width, 3)"),
    (np.zeros((2, 8, 8, 3), np.uint8), "a.gif", "must be an .mp4"),
])
def test_bad_input_is_refused_and_writes_nothing(tmp_path, frames, name, message):
    with pytest.raises(FusionFramesError, match=re.escape(message)):
        write_video(frames, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
