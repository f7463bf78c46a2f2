import json

import pytest

from fusionframes.cli import main


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


def test_eval_alignment_on_renders_meets_every_target(tmp_path, capsys):
    assert main(["eval", "alignment", "--renders", "--fps", "low", "--markdown", str(tmp_path / "report.md")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["accuracy"]["color"] == 1.0 and summary["accuracy"]["motion"] == 1.0
    assert "| group |" in (tmp_path / "report.md").read_text()
    assert main(["eval", "alignment", "--model", str(tmp_path / "missing")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert main(["eval", "alignment", "--batch-size", "0"]) == 2
    assert "--batch-size and --every must be ≥ 1" in capsys.readouterr().err
