"""Captioned videos in WebDataset tar shards, streamed: data sets too large for one disk.

A shard is a tar file read with the ``webdataset`` library; a sample is the run of consecutive members sharing a key
(``KEY`` = the member name up to the first dot of its base name, WebDataset's rule): a video ``KEY.mp4`` (or
``.webm .mkv .mov .avi``) and a caption, ``KEY.txt`` or ``KEY.json`` holding ``{"caption": ...}``. Other members
(``KEY.jpg``, ``KEY.cls`` …) are ignored. Shards are named by a brace pattern (``data/shard-{000000..000099}.tar``,
expanded as WebDataset does, ``::`` joining several patterns) or a list of paths or URLs (anything WebDataset's
``gopen`` opens: local paths, ``file:``, ``http(s):``, ``pipe:`` …).

:meth:`VideoShards.stream` gives process ``rank`` of ``world`` an endless, deterministic sequence of items in the
format of :class:`~fusionframes.data.video.VideoClips` (labels ``url``, ``key``, ``start``). Each epoch the shard list
is shuffled with ``np.random.default_rng((seed, epoch))`` and process ``r`` streams shards ``r::world`` in that order,
samples in tar order. Videos are decoded from memory with PyAV; frames are picked by time exactly as
:class:`VideoClips` picks them, from a clip start drawn from
``np.random.default_rng((seed, epoch, shard_index, sample_index_in_shard))`` (``shard_index``: the shard's place in
the expanded list), so a sample's clip never depends on which process reads it or when.

Exact resume: the iterator tells where it is (:attr:`ShardStream.state`, ``dict(start=, epoch_start=)``: the number
of this process's samples consumed in epoch ``epoch_start``, corrupt ones included); ``stream(rank, world,
**state)`` continues with the very next item, skipping the consumed samples' tar members without reading their
videos into PyAV.

A sample that gives no clip (undecodable video, no video member, no caption, too short) is skipped, recorded once in
:attr:`VideoShards.skipped` as ``("URL/KEY", reason)`` and warned about; the stream goes on. A shard that is not a
readable tar (or breaks off) is reported the same way as ``(URL, reason)`` and the stream continues with the next
shard. Errors (:class:`~fusionframes.errors.FusionFramesError`): a local shard file that does not exist (checked when
the source is built), a shard that cannot be opened, fewer shards than processes, and an epoch in which a process's
shards gave no usable sample at all.
"""

import io
import json
import os
import warnings
from types import SimpleNamespace
from typing import Iterator, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np

from ..errors import FusionFramesError
from .sampling import check_sampling
from .video import (SHOWN, VIDEO_EXTENSIONS, _summary, _Unusable, check_span, clip_duration, clip_item,
                    describe_failure, draw_clip, open_video, probe_container, read_clip)

VIDEO_SUFFIXES: Tuple[str, ...] = tuple(e[1:] for e in VIDEO_EXTENSIONS)  # member suffixes, in preference order


def _webdataset() -> SimpleNamespace:
    """The webdataset functions used here (imported when first needed: the package is only needed for shards)."""
    try:
        from webdataset.gopen import gopen
        from webdataset.shardlists import expand_urls
        from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_expander
    except ImportError:
        raise FusionFramesError("reading tar shards needs the webdataset package: pip install webdataset") from None
    return SimpleNamespace(gopen=gopen, expand_urls=expand_urls, base_plus_ext=base_plus_ext,
                           group_by_keys=group_by_keys, tar_file_expander=tar_file_expander)


def expand_shards(urls: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]) -> List[str]:
    """The shard list: a string is a WebDataset pattern (``{000..009}`` braces, ``::`` between patterns); a list is
    taken as it is."""
    if isinstance(urls, (str, os.PathLike)):
        expanded = _webdataset().expand_urls(os.fspath(urls))
    elif isinstance(urls, Sequence) and all(isinstance(u, (str, os.PathLike)) for u in urls):
        expanded = [os.fspath(u) for u in urls]
    else:
        raise FusionFramesError(f"urls must be a shard pattern or a list of shard paths/URLs, got {urls!r}")
    expanded = [u for u in expanded if u]
    if not expanded:
        raise FusionFramesError(f"no shard in {urls!r}")
    return expanded


def local_path(url: str) -> Optional[str]:
    """The file a shard URL names on this machine (a plain path or ``file:``), None for remote ones."""
    parsed = urlparse(url)
    if parsed.scheme == "":
        return url
    if parsed.scheme == "file":
        return url2pathname(parsed.path)
    if len(parsed.scheme) == 1:  # a Windows drive letter
        return url
    return None


def _message(error: BaseException) -> str:
    """``Type: message`` of an error that went through webdataset, which appends context to ``args``."""
    first = str(error.args[0]) if error.args else ""
    return f"{type(error).__name__}: {first.split(' @ ')[0] or 'no message'}"


class ShardStream:
    """Iterator of one process's items (see :meth:`VideoShards.stream`). After each item, :attr:`epoch` and
    :attr:`position` (this process's samples consumed in that epoch, skipped ones included) locate it;
    :attr:`state` is them as ``stream()`` keyword arguments, to resume right after the last item returned."""

    def __init__(self, source: "VideoShards", rank: int, world: int, start: int, epoch_start: int):
        self.rank, self.world = rank, world
        self.epoch, self.position = epoch_start, start
        self._items = source._generate(self, rank, world, start, epoch_start)

    @property
    def state(self) -> dict:
        return {"start": self.position, "epoch_start": self.epoch}

    def __iter__(self) -> "ShardStream":
        return self

    def __next__(self) -> dict:
        return next(self._items)

    def close(self) -> None:
        """Close the shard being read (also done when the iterator is garbage-collected)."""
        self._items.close()


class VideoShards:
    """Captioned videos streamed from WebDataset tar shards (see the module documentation).

    ``urls``: a brace pattern or a list of shard paths/URLs. ``size``, ``num_frames``, ``fps``, ``skip_frames`` and
    ``seed`` are those of :class:`~fusionframes.data.video.VideoClips`; an item is ``dict(frames=float32 (3, F,
    size, size) in [-1, 1], caption=str, labels=dict(url=str, key=str, start=float), times=float32 (F,))`` plus
    ``skip_frames=int`` when ``skip_frames`` was given.

    ``skipped`` lists ``(URL/KEY or URL, reason)`` of every sample or shard skipped so far by this object's streams,
    each once (per process: every process reports what it read).
    """

    def __init__(self, urls, size: int = 128, num_frames: int = 16, fps: Optional[float] = None,
                 skip_frames: Union[None, int, Sequence[int]] = None, seed: int = 0):
        self.size, self.num_frames, self.fps, self.skip_frames, self.seed = check_sampling(
            size, num_frames, fps, skip_frames, seed)
        self.urls: List[str] = expand_shards(urls)
        missing = [u for u in self.urls if local_path(u) is not None and not os.path.isfile(local_path(u))]
        if missing:
            raise FusionFramesError(f"{len(missing)} of {len(self.urls)} shards not found: "
                                    + ", ".join(missing[:SHOWN]) + (" …" if len(missing) > SHOWN else ""))
        self.skipped: List[Tuple[str, str]] = []
        self._reported: set = set()

    def clip_duration(self, skip: Optional[int] = None) -> float:
        """Seconds from a clip's first instant to its last (with the largest skip when ``skip`` is None)."""
        return clip_duration(self.num_frames, self.fps, self.skip_frames, skip)

    def shards(self, epoch: int, rank: int = 0, world: int = 1) -> List[Tuple[int, str]]:
        """``(shard_index, url)`` of the shards process ``rank`` of ``world`` streams in ``epoch``, in order."""
        order = np.random.default_rng((self.seed, epoch)).permutation(len(self.urls))
        return [(int(i), self.urls[i]) for i in order[rank::world]]

    def stream(self, rank: int = 0, world: int = 1, start: int = 0, epoch_start: int = 0) -> ShardStream:
        """Endless iterator of process ``rank``'s items, epoch after epoch from ``epoch_start``, after skipping
        ``start`` of its samples (counted from the beginning of ``epoch_start``, corrupt ones included; the skip
        reads past their tar members without decoding). Pass a previous stream's :attr:`ShardStream.state` as
        ``start`` and ``epoch_start`` to continue right after its last item."""
        for name, value, low in (("world", world, 1), ("rank", rank, 0), ("start", start, 0),
                                 ("epoch_start", epoch_start, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise FusionFramesError(f"{name} must be an integer ≥ {low}, got {value!r}")
        if rank >= world:
            raise FusionFramesError(f"rank {rank} is not a process of a world of {world}")
        if world > len(self.urls):
            raise FusionFramesError(f"{len(self.urls)} shard{'s' if len(self.urls) != 1 else ''} cannot feed "
                                    f"{world} processes: each process streams whole shards, so there must be at "
                                    f"least as many shards as processes; split the data into more shards or run "
                                    f"fewer processes")
        return ShardStream(self, int(rank), int(world), int(start), int(epoch_start))

    # -- reading ---------------------------------------------------------------------------------------------------

    def _report(self, name: str, reason: str, reasons: list) -> None:
        reasons.append((name, reason))
        if name not in self._reported:
            self._reported.add(name)
            self.skipped.append((name, reason))
            warnings.warn(f"VideoShards: skipping {name}: {reason}", stacklevel=3)

    def _samples(self, url: str, skip: int, counts: dict, reasons: list) -> Iterator[Tuple[int, dict]]:
        """``(index_in_shard, sample)`` of the shard ``url`` after its first ``skip`` samples, whose members are
        passed over unread; ``counts["skipped"]`` says how many were (the shard may hold fewer)."""
        wds = _webdataset()
        split = wds.base_plus_ext
        current = {"key": None, "skip": False}

        def select(name: str) -> bool:  # sees every member in order: counts samples as group_by_keys forms them
            key, _ = split(name)
            if key is None:
                return False
            if key != current["key"]:
                current["key"], current["skip"] = key, counts["skipped"] < skip
                counts["skipped"] += current["skip"]
            return not current["skip"]

        errors: list = []

        def stop(error):  # a broken tar: end this shard (reported below)
            errors.append(error)
            return False

        def drop(error):  # a duplicate member name: drop the member, keep the sample
            member = str(error.args[0]).split(":")[0] if error.args else "?"
            self._report(f"{url}/{member}", f"duplicate member dropped ({_message(error)})", reasons)
            return True

        try:
            handle = wds.gopen(url)
        except Exception as error:
            raise FusionFramesError(f"cannot open the shard {url}: {_message(error)}") from None
        seen = 0
        try:
            files = wds.tar_file_expander([dict(url=url, stream=handle)], handler=stop, select_files=select,
                                          eof_value=None)
            for sample in wds.group_by_keys(files, handler=drop):
                yield counts["skipped"] + seen, sample
                seen += 1
        finally:
            try:
                handle.close()
            except Exception as error:  # a pipe: or remote download that failed
                errors.append(error)
        if errors:
            self._report(url, f"unreadable tar shard after {counts['skipped'] + seen} samples "
                              f"({_message(errors[0])})", reasons)

    @staticmethod
    def _caption(sample: dict) -> str:
        key = sample["__key__"]
        if "txt" in sample:
            try:
                caption = sample["txt"].decode("utf-8").strip()
            except UnicodeDecodeError:
                raise _Unusable(f"unreadable caption {key}.txt (not UTF-8)") from None
            if caption:
                return caption
        if "json" in sample:
            try:
                record = json.loads(sample["json"])
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise _Unusable(f"unreadable caption {key}.json ({error})") from None
            caption = record.get("caption") if isinstance(record, dict) else None
            if isinstance(caption, str) and caption.strip():
                return caption.strip()
        raise _Unusable(f"no caption (neither a non-empty {key}.txt nor a \"caption\" in {key}.json)")

    def _decode(self, data: bytes, rng: np.random.Generator):
        """``(frames, start, times, skip)`` of a clip drawn with ``rng`` from the video file ``data``."""
        with open_video(io.BytesIO(data)) as container:
            span, fps, start_time = probe_container(container)
            check_span(span, self.clip_duration())
            start, times, skip = draw_clip(rng, span, self.num_frames, self.fps, self.skip_frames)
            frames = read_clip(container, fps, start_time, start + times, self.size)
        return frames, start, times, skip

    def _item(self, sample: dict, url: str, shard_index: int, index: int, epoch: int) -> dict:
        key = sample["__key__"]
        suffix = next((s for s in VIDEO_SUFFIXES if s in sample), None)
        if suffix is None:
            raise _Unusable(f"no video member (expected {key}.{' or .'.join(VIDEO_SUFFIXES)})")
        caption = self._caption(sample)
        rng = np.random.default_rng((self.seed, epoch, shard_index, index))
        frames, start, times, skip = self._decode(sample[suffix], rng)
        return clip_item(frames, caption, {"url": url, "key": key, "start": start}, times, skip)

    def _generate(self, handle: ShardStream, rank: int, world: int, start: int, epoch: int) -> Iterator[dict]:
        remaining = start  # samples still to pass over unread
        while True:
            shards = self.shards(epoch, rank, world)
            passed, unread, produced, reasons = 0, 0, 0, []  # passed: this epoch's samples in the finished shards
            for shard_index, url in shards:
                counts = {"skipped": 0}
                total = 0
                for index, sample in self._samples(url, remaining, counts, reasons):
                    total = index + 1
                    try:
                        item = self._item(sample, url, shard_index, index, epoch)
                    except Exception as error:  # never end a long run on one bad sample: report it, go on
                        self._report(f"{url}/{sample['__key__']}", describe_failure(error), reasons)
                        continue
                    produced += 1
                    handle.epoch, handle.position = epoch, passed + total
                    yield item
                remaining -= counts["skipped"]
                unread += counts["skipped"]
                passed += max(total, counts["skipped"])
            if produced == 0 and unread == 0:  # (samples passed over unread may have been usable)
                raise FusionFramesError(
                    f"no usable sample in epoch {epoch} for process {rank} of {world}: its {len(shards)} shard"
                    f"{'s' if len(shards) != 1 else ''} ({', '.join(url for _, url in shards[:SHOWN])}"
                    f"{' …' if len(shards) > SHOWN else ''}) held {passed} samples"
                    + (f", all skipped: {_summary(reasons)}" if reasons else ""))
            epoch += 1
