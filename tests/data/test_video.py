"""Video-file data sources: real H.264/VP9/MPEG-4 files whose frames carry their own index as a binary code, so every
picked frame can be read back and checked against the instant asked for; bad files of every kind; the three source
formats; determinism; files that go bad after probing."""

import csv
import json
import math
import shutil

import av
import numpy as np
import pytest
import torch

from fusionframes import FusionFramesError
from fusionframes.data import VideoClips
from fusionframes.video_io import write_video

H, W = 48, 64  # non-square on purpose: the crop drops 8 columns on each side at size 48
BITS, BAND = 8, 6  # frame index as 8 horizontal bands of 6 rows, white for a set bit (robust to H.264)
FPS4 = dict(size=48, num_frames=4, fps=4.0)  # clips of 0.75 s


def coded_frames(n: int, h: int = H, w: int = W) -> np.ndarray:
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        for b in range(BITS):
            if i >> b & 1:
                frames[i, b * BAND:(b + 1) * BAND] = 255
        frames[i, BITS * BAND:] = (40, 90, 160)  # (only when h > 48)
    return frames


def read_index(frame: torch.Tensor, height: int = H) -> int:
    """The index coded in an output frame (3, S, S) in [-1, 1] by :func:`coded_frames` (bands scale with S)."""
    scale = frame.shape[-2] / height
    index = 0
    for b in range(BITS):
        row = int((b * BAND + BAND / 2) * scale)
        if frame[:, row].mean() > 0:
            index |= 1 << b
    return index


def nearest(t: float, fps: float, n: int) -> set:
    """Index of the frame nearest to time ``t`` in an ``n``-frame video at ``fps``, or both neighbours when their
    distances differ by less than 1.5 ms: Matroska/WebM store timestamps in whole milliseconds, so frame k sits at
    round(1000 k / fps) ms there, and the picker (rightly) follows the file's timestamps."""
    x = min(max(t * fps, 0.0), n - 1)
    low = math.floor(x)
    if abs(x - low - 0.5) * 2 / fps < 1.5e-3:
        return {low, low + 1}
    return {round(x)}


def write_gop(path, frames, fps, codec="libx264", options=None):
    """A video with a keyframe every 12 frames (``write_video`` leaves FFmpeg's 250), so seeking has work to do."""
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = frames.shape[2], frames.shape[1], "yuv420p", 12
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def write_audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        for i in range(3):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


GOOD = {"a24.mp4": (24, 48), "b30.mp4": (30, 48), "c_gop.mkv": (24, 96)}  # name: (fps, frames)
CAPTIONS = {"a24.mp4": "a clip at 24 fps", "b30.mp4": "a clip at 30 fps", "c_gop.mkv": "keyframes every half second"}
BAD = {"audio.mp4": "no video stream", "corrupt.mp4": "unreadable", "nocaption.mp4": "no caption",
       "short.mp4": "too short", "truncated.mp4": "unreadable"}


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Folder ``videos/``: three good videos and five bad ones (every file but ``nocaption.mp4`` captioned), a CSV
    index next to them and a JSONL index in another folder, both listing every captioned file."""
    root = tmp_path_factory.mktemp("library")
    folder = root / "videos"
    write_video(coded_frames(48), folder / "a24.mp4", fps=24)
    write_video(coded_frames(48), folder / "b30.mp4", fps=30)
    write_gop(folder / "c_gop.mkv", coded_frames(96), 24)
    write_video(coded_frames(6), folder / "short.mp4", fps=24)  # 0.21 s between first and last frame
    write_video(coded_frames(48), folder / "nocaption.mp4", fps=24)
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    data = (folder / "a24.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[:len(data) // 2])  # moov atom (at the end) lost
    write_audio_only(folder / "audio.mp4")
    names = sorted(n for n in [*GOOD, *BAD] if n != "nocaption.mp4")
    for name in names:
        (folder / name).with_suffix(".txt").write_text(CAPTIONS.get(name, f"caption of {name}") + "\n")
    with open(root / "videos" / "index.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "duration", "caption"])
        for name in names:
            writer.writerow([name, "9.9", CAPTIONS.get(name, f"caption of {name}")])
    (root / "indexes").mkdir()
    with open(root / "indexes" / "index.jsonl", "w") as handle:
        for name in names:
            handle.write(json.dumps({"caption": CAPTIONS.get(name, f"caption of {name}"), "path": f"../videos/{name}",
                                     "id": 7}) + "\n")
    return root


def check_picks(dataset: VideoClips, index: int, item: dict, fps=None, n=None) -> None:
    """Every frame of ``item`` is the source frame nearest its instant (the video's rate and length from ``GOOD``
    unless given)."""
    name = item["labels"]["path"].rsplit("/", 1)[-1]
    fps, n = (fps, n) if fps else GOOD[name]
    start = item["labels"]["start"]
    for k, t in enumerate(item["times"].tolist()):
        got = read_index(item["frames"][:, k])
        assert got in nearest(start + t, fps, n), (name, index, k, start + t, got)


def test_folder_csv_and_jsonl_give_the_same_items_and_report_skipped_files(library):
    with pytest.warns(UserWarning, match=r"skipped 5 of 8 videos .*corrupt\.mp4") as caught:
        folder = VideoClips(library / "videos", **FPS4)
    assert len(caught) == 1 and len(str(caught[0].message).splitlines()) == 1
    csv_index = VideoClips(library / "videos" / "index.csv", **FPS4)
    jsonl_index = VideoClips(library / "indexes" / "index.jsonl", **FPS4)
    assert len(folder) == len(csv_index) == len(jsonl_index) == 3
    skipped = {p.rsplit("/", 1)[-1]: reason for p, reason in folder.skipped}
    assert set(skipped) == set(BAD)
    for name, reason in BAD.items():
        assert skipped[name].startswith(reason), (name, skipped[name])
    assert "0.21 s" in skipped["short.mp4"] and "0.75 s" in skipped["short.mp4"]
    assert all(str(library / "videos") in p for p, _ in folder.skipped)  # reported with their paths
    assert len(csv_index.skipped) == len(jsonl_index.skipped) == 4  # nocaption.mp4 is not in the indexes
    for i in range(3):
        a, b, c = folder[i], csv_index[i], jsonl_index[i]
        assert a["caption"] == b["caption"] == c["caption"] == CAPTIONS[a["labels"]["path"].rsplit("/", 1)[-1]]
        assert a["labels"] == b["labels"] == c["labels"]
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["frames"], c["frames"])
        assert "skip_frames" not in a


def test_frames_are_the_nearest_to_the_requested_times_including_30fps_resampling(library):
    seen = set()
    for seed in range(4):
        dataset = VideoClips(library / "videos", **FPS4, seed=seed)
        for i in range(len(dataset)):
            item = dataset[i]
            assert item["times"].tolist() == [0.0, 0.25, 0.5, 0.75]
            check_picks(dataset, i, item)
            seen.add(item["labels"]["path"].rsplit("/", 1)[-1])
    assert seen == set(GOOD)


def test_skip_frame_clips_are_spaced_s_over_24_seconds(library):
    dataset = VideoClips(library / "videos", size=48, num_frames=5, skip_frames=[1, 2, 3], seed=1)
    assert dataset.clip_duration() == pytest.approx(0.5)
    skips = set()
    for seed in range(3):
        dataset = VideoClips(library / "videos", size=48, num_frames=5, skip_frames=[1, 2, 3], seed=seed)
        for i in range(len(dataset)):
            item = dataset[i]
            s = item["skip_frames"]
            skips.add(s)
            np.testing.assert_allclose(item["times"].numpy(), np.arange(5) * s / 24, atol=1e-6)
            check_picks(dataset, i, item)
            if item["labels"]["path"].endswith("a24.mp4"):  # at 24 fps: exactly every s-th frame
                got = [read_index(item["frames"][:, k]) for k in range(5)]
                assert np.diff(got).tolist() == [s] * 4
    assert len(skips) > 1
    single = VideoClips(library / "videos", size=48, num_frames=3, skip_frames=2)
    assert all(single[i]["skip_frames"] == 2 for i in range(len(single)))


def test_seeking_lands_on_the_right_frames_in_every_container(tmp_path, monkeypatch):
    frames = coded_frames(96)
    write_gop(tmp_path / "g.mp4", frames, 24)
    write_gop(tmp_path / "g.mkv", frames, 24)
    write_gop(tmp_path / "g.mov", frames, 24)
    write_gop(tmp_path / "g.webm", frames, 24, codec="libvpx-vp9", options=None)
    write_gop(tmp_path / "g.avi", frames, 24, codec="mpeg4")
    for name in ("g.mp4", "g.mkv", "g.mov", "g.webm", "g.avi"):
        (tmp_path / name).with_suffix(".txt").write_text(name)
    calls = []
    original = VideoClips._pick

    def recording(self, container, stream, video, wanted, seek):
        result = original(self, container, stream, video, wanted, seek)
        calls.append((seek, result is not None))
        return result

    monkeypatch.setattr(VideoClips, "_pick", recording)
    for seed in range(3):
        dataset = VideoClips(tmp_path, size=48, num_frames=3, fps=6.0, seed=seed)
        assert len(dataset) == 5 and not dataset.skipped
        for i in range(len(dataset)):
            check_picks(dataset, i, dataset[i], fps=24, n=96)
    assert sum(seek and ok for seek, ok in calls) >= 8  # most clips start late enough to seek, none overshot
    assert all(ok for seek, ok in calls)

    def overshooting(self, container, stream, video, wanted, seek):  # an imprecise index: the fallback decodes from 0
        result = original(self, container, stream, video, wanted, seek)
        return None if seek else result

    monkeypatch.setattr(VideoClips, "_pick", overshooting)
    dataset = VideoClips(tmp_path, size=48, num_frames=3, fps=6.0, seed=2)
    for i in range(len(dataset)):
        check_picks(dataset, i, dataset[i], fps=24, n=96)
    assert not dataset.skipped


def test_shape_range_and_centre_crop_of_non_square_video(tmp_path):
    frames = np.full((30, H, W, 3), 128, np.uint8)
    frames[:, :4] = (0, 255, 0)  # green top rows: kept (the shorter side is not cropped)
    frames[:, 4:, :6] = (255, 0, 0)  # red left and blue right columns: cropped away
    frames[:, 4:, -6:] = (0, 0, 255)
    frames[:, 4:, 32:34] = 255  # a white line right of the centre
    write_video(frames, tmp_path / "wide.mp4", fps=24)
    (tmp_path / "wide.txt").write_text("a wide clip")
    dataset = VideoClips(tmp_path, size=24, num_frames=3, fps=12.0)
    x = dataset[0]["frames"]
    assert x.dtype == torch.float32 and x.shape == (3, 3, 24, 24)
    assert x.min() >= -1 and x.max() <= 1
    rgb = (x + 1) * 127.5
    assert (rgb[1, :, 0] > 200).all() and (rgb[0, :, 0] < 60).all()  # green top row
    body = rgb[:, :, 3:]
    assert (body[0] - body[2]).abs().max() < 20 and (body[1] - body[2]).abs().max() < 20  # no red/blue left: grey
    columns = body.mean(dim=(0, 1, 2))
    assert int(columns.argmax()) == 12  # 64 → 32 wide: source columns 32, 33 → 16; the crop keeps 4..28
    assert 120 < float(body[:, :, :, :8].mean()) < 136
    bigger = VideoClips(tmp_path, size=96, num_frames=2, fps=12.0)[0]["frames"]  # upscaling: 128 × 96 → crop
    assert bigger.shape == (3, 2, 96, 96) and bigger.min() >= -1 and bigger.max() <= 1


def test_items_are_deterministic_per_seed_and_index(library):
    a = VideoClips(library / "videos", **FPS4, seed=3)
    b = VideoClips(library / "videos", **FPS4, seed=3)
    order_a = [a[i] for i in (0, 1, 2)]
    order_b = [b[i] for i in (2, 0, 1)]
    order_b = [order_b[1], order_b[2], order_b[0]]
    for x, y in zip(order_a, order_b):
        assert x["labels"] == y["labels"] and torch.equal(x["frames"], y["frames"])
    assert torch.equal(a[1]["frames"], order_a[1]["frames"])  # again, same object
    assert a[-1]["labels"] == order_a[2]["labels"]
    other = VideoClips(library / "videos", **FPS4, seed=4)
    assert [other.describe(i)["start"] for i in range(3)] != [a.describe(i)["start"] for i in range(3)]
    with pytest.raises(IndexError):
        a[3]


def _copy_good(library, folder):
    folder.mkdir()
    for name in ("a24.mp4", "b30.mp4"):
        shutil.copy(library / "videos" / name, folder / name)
        (folder / name).with_suffix(".txt").write_text(CAPTIONS[name])


def test_a_file_corrupted_after_probing_is_skipped_and_the_next_item_returned(library, tmp_path):
    _copy_good(library, tmp_path / "v")
    dataset = VideoClips(tmp_path / "v", **FPS4)
    assert not dataset.skipped
    expected = dataset[1]
    (tmp_path / "v" / "a24.mp4").write_bytes(np.random.default_rng(1).bytes(3000))
    with pytest.warns(UserWarning, match="a24.mp4"):
        item = dataset[0]
    assert item["labels"] == expected["labels"] and torch.equal(item["frames"], expected["frames"])
    assert dataset[0]["labels"] == expected["labels"] and len(dataset) == 2
    assert [(p.rsplit("/", 1)[-1], r.split(" ")[0]) for p, r in dataset.skipped] == [("a24.mp4", "decoding")]
    (tmp_path / "v" / "b30.mp4").unlink()  # every file gone bad: a clear error, not an endless loop
    with pytest.raises(FusionFramesError, match="failed to decode.*b30.mp4"):
        dataset[0]


def test_files_whose_frames_are_cut_off_are_skipped_at_decoding_time(library, tmp_path):
    _copy_good(library, tmp_path / "v")
    # Headers that survive the cut: probing sees 4 s videos, but the frames past the cut are gone. The MP4 (moov atom
    # in front) makes the decoder raise; the Matroska file just ends early, silently.
    write_gop(tmp_path / "v" / "cut.mp4", coded_frames(96), 24, options={"movflags": "faststart"})
    write_gop(tmp_path / "v" / "cut.mkv", coded_frames(96), 24)
    for name, keep in (("cut.mp4", 0.6), ("cut.mkv", 0.5)):
        data = (tmp_path / "v" / name).read_bytes()
        (tmp_path / "v" / name).write_bytes(data[:int(len(data) * keep)])
    (tmp_path / "v" / "cut.txt").write_text("cut")
    dataset = VideoClips(tmp_path / "v", **FPS4)
    names = [v.path.rsplit("/", 1)[-1] for v in dataset.videos]
    assert names == ["a24.mp4", "b30.mp4", "cut.mkv", "cut.mp4"] and not dataset.skipped

    def late(seed):  # both cut clips start after 2.2 s, past what survives the cuts
        dataset.seed = seed
        return min(dataset.describe(i)["start"] for i in (2, 3)) > 2.2

    dataset.seed = next(s for s in range(1000) if late(s))
    expected = dataset[0]
    item = dataset[2]  # cut.mkv fails, then cut.mp4: item 0 comes back
    assert item["labels"] == expected["labels"] and torch.equal(item["frames"], expected["frames"])
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in dataset.skipped}
    assert reasons["cut.mkv"].startswith("decoding ended early (the last frame decoded is at 1.")
    assert reasons["cut.mp4"].startswith("decoding failed (InvalidDataError")
    assert dataset[3]["labels"] == expected["labels"] and len(dataset.skipped) == 2


def test_nothing_usable_is_an_error_listing_reasons(library, tmp_path):
    index = tmp_path / "bad.csv"
    index.write_text("path,caption\n" + "".join(f"{library / 'videos' / n},x\n" for n in
                                                ("corrupt.mp4", "short.mp4", "audio.mp4", "missing.mp4")))
    with pytest.raises(FusionFramesError, match=r"no usable video.*corrupt\.mp4: unreadable.*short\.mp4: too short"
                                                r".*audio\.mp4: no video stream.*and 1 more"):
        VideoClips(index, **FPS4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FusionFramesError, match="no usable video"):
        VideoClips(tmp_path / "empty", **FPS4)
    with pytest.raises(FusionFramesError, match="too short"):  # 2 s videos cannot hold 16 keyframes at 2 FPS
        VideoClips(library / "videos", size=48, num_frames=16)


def test_source_errors(library, tmp_path):
    with pytest.raises(FusionFramesError, match="does not exist"):
        VideoClips(tmp_path / "nowhere", **FPS4)
    (tmp_path / "index.tsv").write_text("path\tcaption\n")
    with pytest.raises(FusionFramesError, match="unknown index format '.tsv'"):
        VideoClips(tmp_path / "index.tsv", **FPS4)
    (tmp_path / "index.csv").write_text("file,text\na.mp4,a\n")
    with pytest.raises(FusionFramesError, match="missing path, caption"):
        VideoClips(tmp_path / "index.csv", **FPS4)
    with pytest.raises(FusionFramesError, match="either fps or skip_frames"):
        VideoClips(library / "videos", size=48, num_frames=4, fps=2.0, skip_frames=1)
    with pytest.raises(FusionFramesError, match="num_frames"):
        VideoClips(library / "videos", size=48, num_frames=0)


def test_jsonl_bad_lines_and_missing_files_are_reported_not_fatal(library, tmp_path):
    lines = [json.dumps({"path": str(library / "videos" / "a24.mp4"), "caption": "ok"}), "{not json",
             json.dumps(["a list"]), json.dumps({"caption": "no path"}),
             json.dumps({"path": "gone.mp4", "caption": "x"}),
             json.dumps({"path": str(library / "videos" / "b30.mp4"), "caption": "  "})]
    (tmp_path / "i.jsonl").write_text("\n".join(lines) + "\n\n")
    dataset = VideoClips(tmp_path / "i.jsonl", **FPS4)
    assert len(dataset) == 1 and dataset[0]["caption"] == "ok"
    reasons = [r for _, r in dataset.skipped]
    assert reasons[0].startswith("invalid JSON") and reasons[1] == "not a JSON object"
    assert reasons[2] == "no path in the index row" and set(reasons[3:]) == {"empty caption", "file not found"}
    assert any(p == str((tmp_path / "gone.mp4").resolve()) for p, _ in dataset.skipped)
