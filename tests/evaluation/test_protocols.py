"""UCF-101 and MSR-VTT drivers: batched, resumable after a crash, refusing to mix runs (tiny stand-in networks)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from fusionframes import FusionFramesError
from fusionframes.cli import main
from fusionframes.evaluation import protocols
from fusionframes.evaluation.c3d import InceptionScoreC3D
from fusionframes.evaluation.i3d import FVD
from fusionframes.video_io import write_video


class Pooled(nn.Module):
    """(B, 3, T, H, W) → (B, k): a deterministic stand-in for I3D / C3D."""

    def __init__(self, k: int):
        super().__init__()
        torch.manual_seed(k)
        self.linear = nn.Linear(3 * 4, k)

    def forward(self, x):
        return self.linear(nn.functional.adaptive_avg_pool3d(x, (1, 2, 2)).flatten(1))


@pytest.fixture
def ucf(tmp_path):
    root = tmp_path / "UCF-101"
    for i, name in enumerate(["ApplyEyeMakeup", "YoYo"]):
        (root / name).mkdir(parents=True)
        frames = np.random.default_rng(i).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
        write_video(frames, root / name / f"v_{name}_g01_c01.mp4", fps=25)
    return root


def fake_generator(calls, fail_at=None):
    def generate(prompts, seeds):
        calls.append(list(seeds))
        if fail_at is not None and len(calls) == fail_at:
            raise RuntimeError("killed")
        return [np.random.default_rng(s).integers(0, 255, (17, 24, 24, 3), dtype=np.uint8) for s in seeds]
    return generate


def measures():
    return dict(fvd=FVD(Pooled(6)), inception=InceptionScoreC3D(Pooled(5), np.zeros((3, 16, 112, 112))))


def test_class_names_become_prompts():
    assert protocols.class_prompt("ApplyEyeMakeup") == "apply eye makeup"
    assert protocols.class_prompt("YoYo") == "yo yo"
    assert protocols.class_prompt("PlayingDaf") == "playing daf"


def test_ucf101_resumes_after_a_crash_with_the_same_result(ucf, tmp_path):
    reference = protocols.ucf101(fake_generator([]), ucf, **measures(), out=tmp_path / "a", identity={}, samples=6,
                                 batch_size=2)
    assert reference["samples"] == 6 and reference["classes"] == 2 and reference["fvd"] > 0
    assert 1 <= reference["is"] <= 5
    calls = []
    with pytest.raises(RuntimeError, match="killed"):
        protocols.ucf101(fake_generator(calls, fail_at=2), ucf, **measures(), out=tmp_path / "b", identity={},
                         samples=6, batch_size=2)
    assert calls == [[0, 1], [2, 3]]  # generated before the real clips: a too-short model fails at once
    calls.clear()
    resumed = protocols.ucf101(fake_generator(calls), ucf, **measures(), out=tmp_path / "b", identity={},
                               samples=6, batch_size=2)
    assert calls == [[2, 3], [4, 5]]  # the finished batch is not generated again
    assert resumed == pytest.approx(reference)


def test_a_folder_of_another_run_is_refused(ucf, tmp_path):
    protocols.ucf101(fake_generator([]), ucf, **measures(), out=tmp_path / "a", identity={"model": "x"}, samples=2,
                     batch_size=2)
    with pytest.raises(FusionFramesError, match="holds measurements of another run"):
        protocols.ucf101(fake_generator([]), ucf, **measures(), out=tmp_path / "a", identity={"model": "y"},
                         samples=2, batch_size=2)
    with pytest.raises(FusionFramesError, match="batch size differ"):  # batches would overlap or leave gaps
        protocols.ucf101(fake_generator([]), ucf, **measures(), out=tmp_path / "a", identity={"model": "x"},
                         samples=2, batch_size=1)


def test_ucf101_data_errors(tmp_path):
    with pytest.raises(FusionFramesError, match="UCF-101 folder .* does not exist"):
        protocols.ucf101_videos(tmp_path / "nowhere")
    (tmp_path / "empty" / "Class").mkdir(parents=True)
    with pytest.raises(FusionFramesError, match="holds no class folders with videos"):
        protocols.ucf101_videos(tmp_path / "empty")


def test_msrvtt_captions_and_clipsim_mean(tmp_path):
    info = {"videos": [{"video_id": "video1", "split": "train"}, {"video_id": "video7010", "split": "test"}],
            "sentences": [{"video_id": "video1", "caption": "train caption"},
                          {"video_id": "video7010", "caption": "a man is cooking "},
                          {"video_id": "video7010", "caption": "someone cooks"}]}
    (tmp_path / "test_videodatainfo.json").write_text(json.dumps(info))
    captions = protocols.msrvtt_captions(tmp_path / "test_videodatainfo.json")
    assert captions == ["a man is cooking", "someone cooks"]
    (tmp_path / "captions.txt").write_text("one\n\ntwo\nthree\n")
    assert protocols.msrvtt_captions(tmp_path / "captions.txt") == ["one", "two", "three"]
    calls = []

    def clipsim(videos, texts):
        return [float(v.mean()) / 255 for v in videos]

    report = protocols.msrvtt(fake_generator(calls), ["one", "two", "three"], clipsim, tmp_path / "m", {},
                              batch_size=2)
    expected = np.mean([np.random.default_rng(s).integers(0, 255, (17, 24, 24, 3), dtype=np.uint8).mean() / 255
                        for s in range(3)])
    assert report["samples"] == 3 and report["clipsim"] == pytest.approx(expected) and calls == [[0, 1], [2]]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(FusionFramesError, match="not MSR-VTT's annotation format"):
        protocols.msrvtt_captions(tmp_path / "bad.json")


@pytest.mark.parametrize("args, message", [
    (["ucf101"], "eval ucf101 needs --out DIR"),
    (["ucf101", "--out", "x"], "eval ucf101 needs --data"),
    (["ucf101", "--out", "x", "--data", "nowhere", "--i3d", "a", "--c3d", "b", "--c3d-mean", "c"],
     "UCF-101 folder nowhere does not exist"),
    (["msrvtt", "--out", "x"], "eval msrvtt needs --captions"),
    (["msrvtt", "--out", "x", "--captions", "missing.json", "--clip", "c"], "MSR-VTT captions file missing.json"),
    (["msrvtt", "--out", "x", "--samples", "0"], "--batch-size and --samples must be ≥ 1"),
])
def test_protocol_cli_errors_before_any_model_loads(args, message, capsys):
    assert main(["eval", *args]) == 2
    assert message in capsys.readouterr().err


def test_protocol_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["eval", "msrvtt", "--out", str(tmp_path / "file")]) == 2
    assert "is a file; name a folder" in capsys.readouterr().err
