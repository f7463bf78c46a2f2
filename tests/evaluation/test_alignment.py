"""The analytic alignment evaluator: labels read back from real renders (clean, and noisy + blurred), the straight
constant-speed path, flicker, the shipped held-out prompt set, and scores of perfect and deliberately wrong
generators."""

import collections
import json

import numpy as np
import pytest

from fusionframes import FusionFramesError
from fusionframes.data import procedural as D
from fusionframes.data.procedural import (BACKGROUNDS, COLORS, HELD_OUT_COMBINATIONS, HELD_OUT_PHRASINGS, ClipSpec,
                                          mentions, motion_words, render, sample_spec)
from fusionframes.evaluation import (GROUPS, classify_color, degrade, evaluate_alignment, evaluate_renders,
                                     format_markdown, read_video_labels, render_times)
from fusionframes.evaluation import prompts as P

SIZE = 128
ATTRIBUTES = ("color", "shape", "motion", "background")
# Frame times (s) of keyframes, skip-frame clips and a late start: all inside the 8 s a sampled spec stays in view.
GRIDS = (np.arange(16) * 0.5, np.arange(33) * 6 / 24, 0.25 + np.arange(16) * 12 / 24, np.arange(25) * 8 / 24)
NUM_CLIPS = 216
NOISY_CLIPS = 200


@pytest.fixture(scope="module")
def clips():
    """216 sampled clips at 128 px (one in 8 a held-out combination, one in 4 rotated) with their clean reading."""
    rng = np.random.default_rng(2024)
    out = []
    for i in range(NUM_CLIPS):
        spec = sample_spec(rng, held_out=i % 8 == 0, rotation=i % 4 == 3)
        times = GRIDS[i % len(GRIDS)]
        frames = render(spec, times, SIZE)
        out.append((spec, times, frames, read_video_labels(frames, times=times)))
    return out


def accuracy(clips, readings):
    hits = collections.defaultdict(list)
    for (spec, *_), labels in zip(clips, readings):
        for a in ATTRIBUTES:
            hits[a].append(labels[a] == getattr(spec, a))
        hits["shape", spec.size].append(labels["shape"] == spec.shape)
    return {k: float(np.mean(v)) for k, v in hits.items()}


def test_reader_recovers_labels_of_clean_renders(clips):
    acc = accuracy(clips, [c[3] for c in clips])
    assert acc["color"] >= 0.99 and acc["motion"] >= 0.99 and acc["shape"] >= 0.99 and acc["background"] >= 0.99, acc
    for size in ("small", "medium", "large"):
        assert acc["shape", size] >= 0.99, acc
    assert {c[0].motion for c in clips} == set(D.MOTIONS) and {c[0].shape for c in clips} == set(D.SHAPES)


def test_clean_renders_follow_a_straight_constant_speed_path(clips):
    for spec, times, frames, labels in clips:
        truth = spec.centre(times) * SIZE
        assert labels["valid_frames"] == len(times)
        assert np.abs(labels["track"] - truth).max() < 0.25, spec  # the centroid is the shape's centre
        if spec.motion != "still":
            assert labels["path_rms_px"] < 0.5, spec
            expected = (truth[-1] - truth[0]) / (times[-1] - times[0])
            np.testing.assert_allclose(labels["velocity_px"], expected, atol=0.05)
        assert labels["flicker"] < 0.05 and labels["background_step"] < 0.05


def test_reader_is_robust_to_noise_and_blur(clips):
    clips = clips[:NOISY_CLIPS]
    readings, rms = [], []
    for i, (spec, times, frames, _) in enumerate(clips):  # the first 16 frames of each clip (3.75 s or longer)
        labels = read_video_labels(degrade(frames[:16], noise=10.0, blur=1.0, seed=i), times=times[:16])
        readings.append(labels)
        if spec.motion != "still":
            rms.append(labels["path_rms_px"])
    acc = accuracy(clips, readings)
    assert min(acc[a] for a in ATTRIBUTES) >= 0.95, acc
    assert max(rms) < 1.0
    assert max(r["flicker"] for r in readings) < 0.5  # i.i.d. noise is no flicker


def test_degrade_blurs_and_adds_noise():
    frames = render(ClipSpec("white", "square", "still", "gray"), [0.0], 32)
    blurred = degrade(frames, blur=1.0)
    assert blurred.dtype == np.uint8 and blurred.shape == frames.shape and (blurred != frames).any()
    assert abs(blurred.mean() - frames.mean()) < 0.1  # blur moves light around, keeps it
    noisy = degrade(frames, noise=5.0, seed=1)
    background = noisy[frames == 110].astype(float)
    assert 4.5 < background.std() < 5.5 and abs(background.mean() - 110) < 0.3
    assert np.array_equal(noisy, degrade(frames, 5.0, seed=1)) and not np.array_equal(noisy, degrade(frames, 5.0))


def test_flicker_of_an_unsteady_background():
    times = np.arange(16) * 0.5
    frames = render(ClipSpec("cyan", "star", "right", "gray", x0=0.3), times, 64).astype(np.int16)
    frames[1::2] += 8  # every other frame brighter: a flickering video
    labels = read_video_labels(np.clip(frames, 0, 255).astype(np.uint8), times=times)
    assert labels["flicker"] > 3.5 and labels["background_step"] > 7.5
    assert (labels["color"], labels["shape"], labels["motion"], labels["background"]) == ("cyan", "star", "right",
                                                                                          "gray")


def test_a_stray_speck_is_not_the_object():
    spec = ClipSpec("green", "triangle", "down-left", "dark green", "small", "slow", x0=0.6, y0=0.3)
    times = np.arange(16) * 0.5
    frames = render(spec, times, SIZE)
    frames[:, 100:104, 10:14] = 255  # a white 4×4 artefact far from the shape, in every frame
    labels = read_video_labels(degrade(frames, noise=8.0, blur=1.0), fps=2)
    assert (labels["color"], labels["shape"], labels["motion"], labels["background"]) == ("green", "triangle",
                                                                                          "down-left", "dark green")
    assert np.abs(labels["track"] - spec.centre(times) * SIZE).max() < 0.3


def test_two_equal_objects_apart_read_as_one_of_them():
    """The median of two blobs lies between them, on no pixel of either: the reader keeps the blob nearest it."""
    times = np.arange(8) * 0.5
    left = render(ClipSpec("red", "square", "still", x0=0.2, y0=0.5), times, 64)
    right = render(ClipSpec("red", "square", "still", x0=0.8, y0=0.5), times, 64)
    labels = read_video_labels(np.maximum(left, right), times=times)
    assert labels["found"] and (labels["color"], labels["motion"]) == ("red", "still")
    assert np.all(np.abs(labels["track"][:, 0] - 32) > 12)  # on one of the squares, not between them,
    assert np.ptp(labels["track"][:, 0]) < 1  # the same one in every frame


def test_a_video_without_an_object_reads_as_nothing():
    frames = np.broadcast_to(np.asarray(BACKGROUNDS["navy"], np.uint8), (8, 48, 48, 3)).copy()
    labels = read_video_labels(frames)
    assert labels["background"] == "navy" and not labels["found"]
    assert labels["color"] is labels["shape"] is labels["motion"] is None and np.isnan(labels["track"]).all()


def test_bad_input_is_refused():
    frames = render(ClipSpec("red", "circle", "still"), [0.0, 1.0], 32)
    with pytest.raises(FusionFramesError, match="uint8"):
        read_video_labels(frames.astype(np.float32))
    with pytest.raises(FusionFramesError, match="times"):
        read_video_labels(frames, times=[0.0])
    with pytest.raises(FusionFramesError, match="fps"):
        read_video_labels(frames, fps="fast")
    with pytest.raises(FusionFramesError, match="callable"):
        evaluate_alignment("not a function", [])
    with pytest.raises(FusionFramesError, match="labels"):
        evaluate_alignment(lambda p: frames, [dict(prompt="a red circle")])


def test_colour_by_hue_tolerates_brightness():
    for name, rgb in COLORS.items():
        assert classify_color(rgb) == name
        assert classify_color(0.6 * np.asarray(rgb)) == name  # a darker rendering keeps its hue
    assert classify_color((235, 238, 225)) == "white" and classify_color((200, 60, 60)) == "red"


def test_render_times_match_the_pipeline_frame_counts():
    assert [len(render_times(f)) for f in ("low", "medium", "high")] == [16, 61, 241]
    for f in ("low", "medium", "high"):
        assert render_times(f)[0] == 0.0 and render_times(f)[-1] == 7.5
    assert np.allclose(render_times(10, num_frames=11), np.arange(11) / 10)


# -- the held-out prompt set ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prompt_set():
    return P.load_prompt_set()


def test_shipped_prompt_set_equals_its_generator(prompt_set):
    generated = P.generate_prompt_set()
    assert prompt_set == generated
    assert P.PROMPTS_FILE.read_text(encoding="utf-8") == P.dumps(generated)  # byte for byte


def test_prompt_set_covers_the_three_groups_with_consistent_labels(prompt_set):
    assert len(prompt_set) >= 200 and len({r["prompt"].lower().rstrip(".") for r in prompt_set}) == len(prompt_set)
    groups = collections.Counter(r["group"] for r in prompt_set)
    assert set(groups) == set(GROUPS) and min(groups.values()) >= 60
    held = [r for r in prompt_set if r["group"] == "held_out_combination"]
    assert {(r["color"], r["shape"], r["motion"]) for r in held} == set(HELD_OUT_COMBINATIONS)
    for r in prompt_set:
        spec = P.spec_of(r)
        assert spec.held_out == (r["group"] == "held_out_combination")
        assert mentions(r["prompt"], HELD_OUT_PHRASINGS) == (r["group"] == "unseen_phrasing"), r
        assert mentions(r["prompt"], motion_words(r["motion"])), r
        words = D.COLOR_WORDS[r["color"]] + D.UNSEEN_COLOR_WORDS[r["color"]]
        assert mentions(r["prompt"], words), r
        assert mentions(r["prompt"], D.SHAPE_WORDS[r["shape"]] + D.UNSEEN_SHAPE_WORDS[r["shape"]]), r
        if r["background"] != "black":
            assert mentions(r["prompt"], D.BACKGROUND_WORDS[r["background"]]
                            + D.UNSEEN_BACKGROUND_WORDS[r["background"]]), r
    for group in ("seen", "unseen_phrasing"):  # colours and motions balanced
        rows = [r for r in prompt_set if r["group"] == group]
        assert set(collections.Counter(r["motion"] for r in rows).values()) <= {8, 9}
        assert set(collections.Counter(r["color"] for r in rows).values()) == {10}


# -- scoring generators --------------------------------------------------------------------------------------------

def subset(prompt_set, step=5):  # 5 is prime to the 8 colours and 9 motions the groups cycle through
    return prompt_set[::step]


def test_true_renders_score_full_marks(prompt_set, tmp_path):
    chosen = subset(prompt_set)
    by_prompt = {r["prompt"]: r for r in chosen}
    times = render_times("low")
    report = evaluate_alignment(lambda p: render(P.spec_of(by_prompt[p]), times, SIZE), chosen, fps="low",
                                markdown=tmp_path / "alignment.md")
    assert report["num_prompts"] == len(chosen) and set(report["groups"]) == set(GROUPS)
    assert all(report["accuracy"][a] == 1.0 for a in ATTRIBUTES + ("all",)), report["accuracy"]
    assert all(report["groups"][g]["all"] == 1.0 for g in GROUPS)
    assert all(abs(v) < 1e-12 for gap in report["gaps"].values() for v in gap.values())
    assert report["path_rms_px"]["max"] < 0.5 and report["flicker"]["steady_fraction"] == 1.0
    assert all(t["met"] for t in report["targets"].values()), report["targets"]
    assert json.loads(json.dumps(report, allow_nan=False)) == report  # plain JSON
    text = (tmp_path / "alignment.md").read_text()
    assert text == format_markdown(report) and "| held_out_combination |" in text and "| **all** |" in text


def test_batched_generation_scores_the_same_in_prompt_order(prompt_set):
    chosen = subset(prompt_set, 13)
    by_prompt = {r["prompt"]: r for r in chosen}
    times = render_times("low")
    one = lambda p: render(P.spec_of(by_prompt[p]), times, SIZE)  # noqa: E731
    calls = []

    def batch(prompts):
        calls.append(len(prompts))
        return [one(p) for p in prompts]

    single = evaluate_alignment(one, chosen, fps="low")
    batched = evaluate_alignment(batch, chosen, fps="low", batch_size=4)
    assert calls == [4] * (len(chosen) // 4) + ([len(chosen) % 4] if len(chosen) % 4 else [])
    assert [r["id"] for r in batched["per_prompt"]] == [r["id"] for r in chosen]
    assert batched["accuracy"] == single["accuracy"]
    with pytest.raises(FusionFramesError, match="generate returned 1 videos for a batch of 4 prompts"):
        evaluate_alignment(lambda prompts: [one(prompts[0])], chosen, fps="low", batch_size=4)
    with pytest.raises(FusionFramesError, match="batch_size must be a positive integer"):
        evaluate_alignment(one, chosen, batch_size=0)


def test_evaluate_renders_is_the_ceiling_even_degraded(prompt_set):
    report = evaluate_renders(subset(prompt_set, 11), fps="low", noise=10.0, blur=1.0)
    assert report["accuracy"]["all"] == 1.0 and report["fps"] == 2.0


def test_a_wrong_generator_scores_the_expected_chance_levels(prompt_set):
    chosen = subset(prompt_set)
    video = render(ClipSpec("red", "circle", "right", x0=0.3, y0=0.5), render_times("low"), SIZE)
    report = evaluate_alignment(lambda p: video, chosen, fps="low")
    share = {a: np.mean([r[a] == v for r in chosen])
             for a, v in dict(color="red", shape="circle", motion="right", background="black").items()}
    for a in ATTRIBUTES:
        assert report["accuracy"][a] == pytest.approx(share[a]), a
    assert report["accuracy"]["color"] < 0.25 and report["accuracy"]["motion"] < 0.2
    assert not report["targets"]["color"]["met"] and not report["targets"]["motion"]["met"]
    assert report["confusion"]["color"]["blue"] == {"red": sum(r["color"] == "blue" for r in chosen)}
    # An empty video reads as nothing: every attribute but the background is wrong.
    blank = np.zeros((16, SIZE, SIZE, 3), np.uint8)
    report = evaluate_alignment(lambda p: blank, chosen[:8], fps="low")
    assert report["accuracy"]["color"] == report["accuracy"]["shape"] == report["accuracy"]["motion"] == 0.0
    assert report["path_rms_px"]["count"] == 0 and json.loads(json.dumps(report, allow_nan=False)) == report
