"""WebDataset tar shards: real H.264 clips whose grey level encodes the frame index, packed with ``tarfile`` into four
shards (3 × 3 good samples, and one shard holding a good sample next to a corrupt, an uncaptioned and a too-short
one); item format, frames at the requested instants, determinism, rank splitting, exact resume, reporting, errors."""

import io
import json
import math
import tarfile
import warnings

import numpy as np
import pytest
import torch

from fusionframes import FusionFramesError
from fusionframes.data import VideoShards
from fusionframes.video_io import write_video

FPS = 24
P = dict(size=16, num_frames=4, fps=4.0)  # clips of 0.75 s
GOOD = [f"s{s}{j}" for s in range(3) for j in range(3)] + ["s30"]
BAD = {"s31": "unreadable", "s32": "no caption", "s33": "too short"}
CAPTION = {key: f"clip {key}" for key in GOOD}


def grey_frames(n: int) -> np.ndarray:
    """Frame i is uniformly grey at 10 + 4 i (H.264 keeps a flat grey within ±1)."""
    assert n <= 60
    levels = (10 + 4 * np.arange(n)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, 24, 32, 3)).copy()


def frame_index(frame: torch.Tensor) -> int:
    return round((float(frame.mean()) * 127.5 + 127.5 - 10) / 4)


def nearest(t: float, n: int) -> set:
    x = min(max(t * FPS, 0.0), n - 1)
    low = math.floor(x)
    return {low, low + 1} if abs(x - low - 0.5) < 1e-6 else {round(x)}


def length(key: str) -> int:
    return 6 if key == "s33" else 48 + 3 * int(key[1]) + int(key[2])  # 2 s and more; s33: 0.21 s


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    video = {}
    for key in GOOD + ["s32", "s33"]:
        video[key] = write_video(grey_frames(length(key)), root / "tmp" / f"{key}.mp4", fps=FPS).read_bytes()
    video["s31"] = np.random.default_rng(0).bytes(3000)
    for s in range(4):
        with tarfile.open(root / f"shard-{s:06d}.tar", "w") as tar:
            for key in sorted(k for k in video if k[1] == str(s)):
                add(tar, f"{key}.mp4", video[key])
                if key == "s01":
                    add(tar, f"{key}.json", json.dumps({"caption": CAPTION[key], "id": 1}).encode())
                elif key == "s30":
                    add(tar, f"{key}.cls", b"3")  # an extra member, ignored
                    add(tar, f"{key}.txt", CAPTION[key].encode())
                elif key == "s32":
                    add(tar, f"{key}.json", b'{"id": 32}')  # no caption
                else:
                    add(tar, f"{key}.txt", CAPTION.get(key, "a caption").encode())
    return root


def pattern(root) -> str:
    return str(root / "shard-{000000..000003}.tar")


def take(stream, n: int) -> list:
    """``n`` items with the stream's state after each."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(next(stream), dict(stream.state)) for _ in range(n)]


def same(a: dict, b: dict) -> bool:
    return a["caption"] == b["caption"] and a["labels"] == b["labels"] and torch.equal(a["frames"], b["frames"])


def test_items_have_the_clip_format_and_frames_at_the_requested_times(shards):
    dataset = VideoShards(pattern(shards), **P)
    for item, _ in take(dataset.stream(), 12):
        assert set(item) == {"frames", "caption", "labels", "times"}
        x = item["frames"]
        assert x.dtype == torch.float32 and x.shape == (3, 4, 16, 16) and x.min() >= -1 and x.max() <= 1
        key = item["labels"]["key"]
        assert set(item["labels"]) == {"url", "key", "start"} and item["caption"] == CAPTION[key]
        assert item["labels"]["url"] == str(shards / f"shard-00000{key[1]}.tar")
        assert item["times"].tolist() == [0.0, 0.25, 0.5, 0.75]
        start = item["labels"]["start"]
        assert 0 <= start <= (length(key) - 1) / FPS - 0.75
        for k, t in enumerate(item["times"].tolist()):
            assert frame_index(x[:, k]) in nearest(start + t, length(key)), (key, k, start + t)


def test_skip_frame_clips_take_every_s_th_source_frame(shards):
    dataset = VideoShards(pattern(shards), size=16, num_frames=5, skip_frames=[1, 2, 3], seed=1)
    skips = set()
    for item, _ in take(dataset.stream(), 8):
        s = item["skip_frames"]
        skips.add(s)
        np.testing.assert_allclose(item["times"].numpy(), np.arange(5) * s / 24, atol=1e-6)
        got = [frame_index(item["frames"][:, k]) for k in range(5)]
        assert np.diff(got).tolist() == [s] * 4
        assert got[0] in nearest(item["labels"]["start"], length(item["labels"]["key"]))
    assert len(skips) > 1


def test_streams_are_deterministic_and_epochs_differ(shards):
    a = take(VideoShards(pattern(shards), **P, seed=3).stream(), 13)
    b = take(VideoShards([str(shards / f"shard-{s:06d}.tar") for s in range(4)], **P, seed=3).stream(), 13)
    assert all(same(x, y) and s == t for (x, s), (y, t) in zip(a, b))
    assert [s["epoch_start"] for _, s in a] == [0] * 10 + [1] * 3  # 10 good samples an epoch
    assert sorted(x["labels"]["key"] for x, _ in a[:10]) == sorted(GOOD)
    first = {x["labels"]["key"]: x["labels"]["start"] for x, _ in a[:10]}
    assert all(first[x["labels"]["key"]] != x["labels"]["start"] for x, _ in a[10:])  # a new clip each epoch
    other = take(VideoShards(pattern(shards), **P, seed=4).stream(), 10)
    assert [x["labels"] for x, _ in other] != [x["labels"] for x, _ in a[:10]]


def test_two_processes_see_disjoint_shards_that_cover_an_epoch(shards):
    dataset = VideoShards(pattern(shards), **P, seed=5)
    keys = []
    for rank in (0, 1):
        stream = dataset.stream(rank, 2)
        items = [x for x, state in take(stream, 8) if state["epoch_start"] == 0]
        assert len(items) < 8  # reached epoch 1
        urls = {url for _, url in dataset.shards(0, rank, 2)}
        assert len(urls) == 2 and {x["labels"]["url"] for x in items} == urls
        keys.append([x["labels"]["key"] for x in items])
    assert not set(keys[0]) & set(keys[1]) and sorted(keys[0] + keys[1]) == sorted(GOOD)
    again = take(dataset.stream(1, 2), 3)  # the same (seed, rank, world): the same sequence
    assert [x["labels"]["key"] for x, _ in again] == keys[1][:3]


def test_resuming_from_a_state_or_a_sample_count_continues_exactly(shards, monkeypatch):
    dataset = VideoShards(pattern(shards), **P, seed=2)
    full = take(dataset.stream(), 16)
    for j in (0, 4, 9, 11):  # after item j (9: the last of epoch 0)
        resumed = take(dataset.stream(**full[j][1]), 3)
        assert all(same(x, y) and s == t for (x, s), (y, t) in zip(resumed, full[j + 1:j + 4])), j
    position = [(s["epoch_start"], s["start"] - 1) for _, s in full]  # each item's sample in its epoch
    epoch_length = 13
    for k in (1, 5, 8, 12, epoch_length + 2):  # start counts samples, the corrupt ones too, across epochs
        expected = [x for x, p in zip(full, position) if p >= divmod(k, epoch_length)]
        resumed = take(dataset.stream(start=k), 3)
        assert all(same(x, y) for (x, _), (y, _) in zip(resumed, expected[:3])), k
    decoded = []
    original = VideoShards._decode
    monkeypatch.setattr(VideoShards, "_decode", lambda self, data, rng: decoded.append(1) or original(self, data, rng))
    k = position[6][1]
    item, state = take(dataset.stream(start=k), 1)[0]
    assert same(item, full[6][0]) and state == full[6][1] and len(decoded) == 1  # the skipped samples: not decoded


def test_bad_samples_are_skipped_reported_once_and_never_raise(shards):
    dataset = VideoShards(pattern(shards), **P)
    stream = dataset.stream()
    with pytest.warns(UserWarning) as caught:
        items = [next(stream) for _ in range(11)]  # the whole first epoch and one more
    reasons = {name: reason for name, reason in dataset.skipped}
    tar3 = str(shards / "shard-000003.tar")
    assert set(reasons) == {f"{tar3}/{key}" for key in BAD}
    for key, reason in BAD.items():
        assert reasons[f"{tar3}/{key}"].startswith(reason), reasons
        assert any(f"{tar3}/{key}" in str(w.message) for w in caught)
    assert "0.21 s" in reasons[f"{tar3}/s33"] and "s32.json" in reasons[f"{tar3}/s32"]
    assert all(x["labels"]["key"] in GOOD for x in items)
    take(stream, 10)  # another epoch: the same samples skipped, listed once
    assert len(dataset.skipped) == 3


def test_broken_tar_shards_are_reported_and_the_stream_goes_on(shards, tmp_path):
    data = (shards / "shard-000000.tar").read_bytes()
    with tarfile.open(shards / "shard-000000.tar") as tar:
        member = tar.getmember("s01.mp4")
    (tmp_path / "cut.tar").write_bytes(data[:member.offset_data + member.size // 2])  # breaks off in s01's video
    (tmp_path / "noise.tar").write_bytes(np.random.default_rng(1).bytes(5000))
    dataset = VideoShards([str(tmp_path / "cut.tar"), str(tmp_path / "noise.tar"), str(shards / "shard-000001.tar")],
                          **P)
    keys = [x["labels"]["key"] for x, _ in take(dataset.stream(), 8)]
    assert set(keys) == {"s00", "s10", "s11", "s12"}
    reasons = dict(dataset.skipped)
    assert set(reasons) == {str(tmp_path / "noise.tar"), str(tmp_path / "cut.tar")}
    assert reasons[str(tmp_path / "noise.tar")].startswith("unreadable tar shard after 0 samples (ReadError")
    assert reasons[str(tmp_path / "cut.tar")].startswith("unreadable tar shard after 1 samples")


def test_brace_patterns_and_url_lists(shards):
    names = [str(shards / f"shard-{s:06d}.tar") for s in range(4)]
    assert VideoShards(pattern(shards), **P).urls == names
    assert VideoShards(str(shards / "shard-00000{0,2}.tar"), **P).urls == [names[0], names[2]]
    assert VideoShards(f"{names[3]}::{shards}/shard-{{000000..000001}}.tar", **P).urls == [names[3], *names[:2]]
    assert VideoShards(shards / "shard-000001.tar", **P).urls == [names[1]]
    assert VideoShards(names[::-1], **P).urls == names[::-1]
    assert VideoShards(["file://" + names[0]], **P).urls == ["file://" + names[0]]


def test_errors_missing_shards_too_many_processes_and_no_usable_sample(shards, tmp_path):
    with pytest.raises(FusionFramesError, match=r"1 of 5 shards not found: .*shard-000004\.tar"):
        VideoShards(str(shards / "shard-{000000..000004}.tar"), **P)
    dataset = VideoShards(pattern(shards), **P)
    with pytest.raises(FusionFramesError, match="4 shards cannot feed 5 processes"):
        dataset.stream(0, 5)
    with pytest.raises(FusionFramesError, match="rank 2 is not a process"):
        dataset.stream(2, 2)
    with pytest.raises(FusionFramesError, match="either fps or skip_frames"):
        VideoShards(pattern(shards), size=16, num_frames=4, fps=2.0, skip_frames=1)
    with tarfile.open(tmp_path / "bad.tar", "w") as tar:  # nothing usable: corrupt video, no caption, short
        for key, name in (("s31", "s31.mp4"), ("s32", "s32.mp4"), ("s33", "s33.mp4")):
            add(tar, name, np.random.default_rng(2).bytes(2000))
        add(tar, "s33.txt", b"short")
    stream = VideoShards(str(tmp_path / "bad.tar"), **P).stream()
    empty = r"no usable sample in epoch 0 .*3 samples, all skipped: .*s32: no caption.*s33: unreadable"
    with pytest.warns(UserWarning), pytest.raises(FusionFramesError, match=empty):
        next(stream)
    (tmp_path / "gone.tar").write_bytes((shards / "shard-000000.tar").read_bytes())
    gone = VideoShards(str(tmp_path / "gone.tar"), **P)
    (tmp_path / "gone.tar").unlink()  # vanished after the source was built
    with pytest.raises(FusionFramesError, match="cannot open the shard .*gone.tar"):
        next(gone.stream())
