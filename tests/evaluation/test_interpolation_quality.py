"""Interpolation quality (in-between frames against the truth) on the tiny pipeline."""

import json

import pytest
import torch

from fusionframes import FusionFramesError
from fusionframes.cli import main
from fusionframes.evaluation.interpolation import METHODS, format_table, interpolation_quality, procedural_clips


def test_scores_every_method_and_a_perfect_interpolator_matches_the_autoencoder(pipe, monkeypatch):
    clips = list(procedural_clips(3, skip_frames=2, groups=2, size=16, batch_size=2))
    assert [tuple(c.shape) for c in clips] == [(2, 3, 9, 16, 16), (1, 3, 9, 16, 16)]
    report = interpolation_quality(pipe, clips, skip_frames=2, num_inference_steps=2)
    assert report["clips"] == 3 and set(METHODS) <= set(report)
    for method in METHODS:
        assert 0 < report[method]["mse"] < 1 and -1 <= report[method]["ssim"] <= 1
    # The model's prediction replaced by the true latents: it scores exactly as the autoencoder.
    monkeypatch.setattr(pipe, "interpolate", lambda keyframes, *args: pipe.movq.encode(
        clips_by_keyframes[keyframes.shape[0]].to(pipe.movq.dtype)).float())
    clips_by_keyframes = {c.shape[0]: c for c in clips}
    perfect = interpolation_quality(pipe, clips, skip_frames=2, num_inference_steps=2)
    assert perfect["model"] == pytest.approx(perfect["autoencoder"])
    assert "| 2 | " in format_table({2: perfect})


def test_bad_clips_are_refused(pipe):
    with pytest.raises(FusionFramesError, match=r"clips must be \(batch, 3, 4G\+1, H, W\)"):
        interpolation_quality(pipe, [torch.zeros(1, 3, 8, 16, 16)], skip_frames=1)
    with pytest.raises(FusionFramesError, match="no clips to score"):
        interpolation_quality(pipe, [], skip_frames=1)


@pytest.mark.parametrize("args, message", [
    (["--skip", "0-3"], "--skip takes skip-frames ≥ 1"),
    (["--skip", "a,b"], "--skip takes skip-frames ≥ 1"),
    (["--skip", "1-3-5"], "--skip takes skip-frames ≥ 1"),
    (["--skip", "1-99999999999"], "--skip takes skip-frames ≥ 1"),
    (["--clips", "0"], "--clips and --groups must be ≥ 1, got 0 and 2"),
    (["--interpolation-steps", "0"], "--interpolation-steps must be from 1 to 1000, got 0"),
])
def test_eval_interpolation_cli_errors(args, message, capsys):
    assert main(["eval", "interpolation", *args]) == 2
    assert message in capsys.readouterr().err


def test_eval_interpolation_cli_writes_table_json_and_plot(pipe, tmp_path, capsys):
    pipe.save_pretrained(tmp_path / "model")
    out = tmp_path / "report"
    assert main(["eval", "interpolation", "--model", str(tmp_path / "model"), "--skip", "1,3", "--clips", "2",
                 "--groups", "1", "--interpolation-steps", "2", "--out", str(out), "--quiet"]) in (0, None)
    report = json.loads((out / "interpolation.json").read_text())
    assert sorted(report["skip_frames"]) == ["1", "3"] and report["settings"]["clips"] == 2
    assert (out / "interpolation_psnr.png").stat().st_size > 1000
    assert "| 3 | " in (out / "interpolation.md").read_text() and "| 1 | " in capsys.readouterr().out
