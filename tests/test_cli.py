import json

import pytest

from fusionframes.cli import main
from fusionframes.video_io import read_metadata, read_video


@pytest.mark.parametrize("preset, expected", [
    ("kandinsky3-unet", 3038562820),
    ("kv1-keyframe-unet", 4143739012),
    ("kv1-interpolation-unet", 3872572046),
])
def test_params_json_prints_official_counts(capsys, preset, expected):
    assert main(["params", preset, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"preset": preset, "parameters": expected}


def test_unknown_preset_is_a_message_and_exit_2(capsys):
    assert main(["params", "kv2-unet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown preset 'kv2-unet'") and "kv1-keyframe-unet" in err
    assert "Traceback" not in err


def test_convert_official_errors_are_messages(tmp_path, capsys):
    assert main(["convert-official", "--component", "keyframe-unet", str(tmp_path / "missing.pt"),
                 str(tmp_path / "out")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["convert-official", "--component", "keyframe-unet", "--config", "{not json",
                 str(tmp_path / "missing.pt"), str(tmp_path / "out")]) == 2
    assert "--config is neither a JSON object nor a JSON file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_demo_writes_a_playable_video_with_metadata(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    assert main(["demo", "a green star moving up", "-o", str(out), "--fps", "medium", "--quiet", "--json",
                 "--gif", "--frames-dir", str(tmp_path / "frames")]) == 0
    printed = capsys.readouterr().out
    assert "RANDOM" in printed  # it must say it is not a trained model
    summary = json.loads(printed.strip().splitlines()[-1])
    assert summary["frames"] == 13 and summary["fps"] == 8 and summary["seed"] == 0  # 4 keyframes → 13 frames
    assert set(summary["seconds"]) == {"text", "keyframes", "interpolation s=3", "decode"}
    frames = read_video(out)
    assert frames.shape == (13, 128, 128, 3)
    stored = json.loads(read_metadata(out)["comment"])
    assert stored["prompt"] == "a green star moving up" and stored["seed"] == 0 and stored["fps"] == "medium"
    assert len(list((tmp_path / "frames").iterdir())) == 13 and (tmp_path / "demo.gif").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.gif", "demo.mp4", "frames"]


def test_eval_alignment_on_renders_meets_every_target(tmp_path, capsys):
    assert main(["eval", "alignment", "--renders", "--fps", "low", "--markdown", str(tmp_path / "report.md")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["accuracy"]["color"] == 1.0 and summary["accuracy"]["motion"] == 1.0
    assert "| group |" in (tmp_path / "report.md").read_text()
    assert main(["eval", "alignment"]) == 2
    assert "no default model is installed yet" in capsys.readouterr().err
