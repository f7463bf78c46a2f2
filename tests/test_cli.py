import json

import pytest

from fusionframes.cli import main
from fusionframes.video_io import read_video


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


def test_demo_writes_a_playable_video(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--prompt", "a green star moving up", "--output", str(out)]) == 0
    assert "RANDOM" in capsys.readouterr().out  # it must say it is not a trained model
    frames = read_video(out)
    assert frames.shape == (49, 128, 128, 3)  # 4 keyframes → 13 → 49 frames, 16×16 latents × 8
    assert list(tmp_path.iterdir()) == [out]
