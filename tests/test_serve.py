"""The web demo's server side: every limit, the bounded queue, results on disk (no browser; see test_web_demo)."""

import re
import threading
import zipfile

import numpy as np
import pytest

from fusionframes import FusionFramesError
from fusionframes.serve import Busy, Limits, Request, Studio
from fusionframes.video_io import read_video

LIMITS = Limits(max_prompt_chars=40, max_steps=4, max_interpolation_steps=3, max_guidance=8.0, sizes=(10, 16, 32),
                max_queue=2, keep_results=3)


@pytest.fixture
def studio(pipe, tmp_path):
    return Studio(pipe, LIMITS, tmp_path / "results")


def request(**changes):
    return Request(**{**dict(prompt="a red ball", seed=1, steps=2, interpolation_steps=1, guidance=3.0, fps="high",
                             size=16), **changes})


@pytest.mark.parametrize("changes, message", [
    (dict(prompt="   "), "write a prompt first"),
    (dict(prompt="x" * 41), "the prompt is too long: at most 40 characters, got 41"),
    (dict(negative_prompt="y" * 41), "the negative prompt is too long: at most 40 characters, got 41"),
    (dict(steps=5), "steps must be a whole number from 1 to 4, got 5"),
    (dict(steps=0), "steps must be a whole number from 1 to 4, got 0"),
    (dict(steps=2.5), "steps must be a whole number from 1 to 4, got 2.5"),
    (dict(steps="3"), "steps must be a whole number from 1 to 4, got '3'"),
    (dict(interpolation_steps=4), "interpolation steps must be a whole number from 1 to 3, got 4"),
    (dict(guidance=8.5), "guidance must be a number from 0 to 8, got 8.5"),
    (dict(guidance=-1), "guidance must be a number from 0 to 8, got -1"),
    (dict(fps="ultra"), "fps must be one of low, medium, high, got 'ultra'"),
    (dict(fps=["high"]), "fps must be one of low, medium, high, got ['high']"),
    (dict(size=64), "resolution must be a whole number from 1 to 32, got 64"),
    (dict(size=24), "resolution must be one of 16, 32, got 24"),
    (dict(seed=-1), "seed must be a whole number from 0 to 4294967295, got -1"),
    (dict(seed=2 ** 32), "seed must be a whole number from 0 to 4294967295"),
])
def test_every_limit_is_enforced_on_the_server(studio, changes, message):
    with pytest.raises(FusionFramesError, match=re.escape(message)):
        studio.generate(request(**changes))
    assert not any(studio.output_root.iterdir())  # nothing written for a refused request


def test_sizes_the_model_cannot_make_are_not_offered(studio):
    assert studio.sizes == (16, 32)  # the tiny model makes multiples of 4 or 8, not 10
    assert studio.default_size == 16


def test_a_result_is_a_playable_video_with_its_keyframes_seed_and_settings(studio):
    steps = []
    result = studio.generate(request(), lambda fraction, text: steps.append((fraction, text)))
    video = read_video(result.video)
    assert video.shape == (33, 16, 16, 3)  # 3 keyframes → 9 → 33 frames
    assert [p.name for p in result.keyframes] == ["keyframe_00.png", "keyframe_01.png", "keyframe_02.png"]
    with zipfile.ZipFile(result.keyframes_zip) as archive:
        assert archive.namelist() == [p.name for p in result.keyframes]
    assert result.seed == 1 and result.video.parent.parent == studio.output_root
    assert result.settings["frames"] == 33 and result.settings["frame_rate"] == 30
    assert "seed **1**" in result.describe() and "16×16" in result.describe()
    # Progress per stage: 2 keyframe steps, 1 step of each interpolation pass, then decoding; always increasing.
    texts = [text for _, text in steps]
    assert texts == ["keyframes: step 1 of 2", "keyframes: step 2 of 2", "interpolation s=3: step 1 of 1",
                     "interpolation s=1: step 1 of 1", "decoding and writing the video"]
    assert all(a < b for (a, _), (b, _) in zip(steps, steps[1:])) and steps[-1][0] < 1


def test_a_seed_reproduces_its_video_and_a_random_seed_is_reported(studio):
    first, again = (read_video(studio.generate(request(fps="low")).video) for _ in range(2))
    assert np.array_equal(first, again)
    chosen = studio.generate(request(fps="low", seed=None))
    assert 0 <= chosen.seed < 2 ** 32
    assert np.array_equal(read_video(chosen.video), read_video(studio.generate(request(fps="low",
                                                                                       seed=chosen.seed)).video))


def test_only_the_latest_results_stay_on_disk(studio):
    for seed in range(5):
        studio.generate(request(fps="low", seed=seed))
    assert len([p for p in studio.output_root.iterdir() if p.is_dir()]) == LIMITS.keep_results


def test_one_generation_at_a_time_and_busy_beyond_the_queue(studio, monkeypatch):
    release, running, order = threading.Event(), threading.Semaphore(0), []
    active = {"now": 0, "max": 0}

    def slow_run(req, progress):
        active["now"] += 1
        active["max"] = max(active["max"], active["now"])
        running.release()
        release.wait(10)
        order.append(req.seed)
        active["now"] -= 1
        return req.seed

    monkeypatch.setattr(studio, "_run", slow_run)
    errors = []

    def submit(seed):
        try:
            studio.generate(request(seed=seed))
        except Busy as error:
            errors.append(str(error))

    threads = [threading.Thread(target=submit, args=(seed,)) for seed in range(3)]  # 1 running + 2 waiting
    for thread in threads:
        thread.start()
        assert running.acquire(timeout=10) if thread is threads[0] else True
    while studio.waiting < 2:
        threading.Event().wait(0.01)
    submit(99)  # the queue is full: refused at once
    assert errors == ["the server is busy: 3 generations are running or waiting (at most 2 may wait); try again "
                      "in a minute"]
    release.set()
    for thread in threads:
        thread.join(10)
    assert sorted(order) == [0, 1, 2] and active["max"] == 1 and studio.waiting == 0
    studio.generate(request(seed=5))  # admitted again once the queue drains
    assert order[-1] == 5


@pytest.mark.parametrize("args, message", [
    (["--port", "0"], "--port must be between 1 and 65535, got 0"),
    (["--max-queue", "-1"], "--max-queue must be ≥ 0, got -1"),
    (["--dtype", "float8"], "unknown dtype 'float8'"),
])
def test_serve_cli_errors_before_loading_anything(args, message, capsys):
    from fusionframes.cli import main

    assert main(["serve", *args]) == 2
    assert message in capsys.readouterr().err
