"""Every stage trains from the command line on procedural clips; resume is exact; configs are validated."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fusionframes import FusionFramesError
from fusionframes.cli import main
from fusionframes.training import load_config, train

ROOT = Path(__file__).resolve().parents[2]
MOVQ = dict(ch=32, ch_mult=[1, 2, 2, 2], num_res_blocks=1, attn_resolutions=[4], resolution=32, norm_groups=8)
UNET = dict(model_channels=32, init_channels=16, time_embed_dim=64, context_dim=64, groups=8, head_dim=16,
            expansion_ratio=2, dim_mult=[1, 2], num_blocks=[1, 1], add_cross_attention=[False, True],
            add_self_attention=[False, True])


def config(stage, out, steps=4, **sections):
    values = {"stage": stage, "output_dir": str(out), "data": {"size": 32, "length": 64},
              "model": {}, "train": {"steps": steps, "batch_size": 2, "log_every": 1, "checkpoint_every": 100}}
    for key, extra in sections.items():
        values[key].update(extra)
    return load_config(values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny image MoVQ and T2I model, the starting points of the other stages."""
    root = tmp_path_factory.mktemp("stages")
    train(config("movq", root / "movq", steps=3, model={"movq": MOVQ}, train={"sample_every": 3}), progress=False)
    movq = root / "movq" / "final" / "movq"
    train(config("t2i", root / "t2i", steps=3, model={"movq_path": str(movq), "unet": UNET},
                 train={"sample_every": 3}), progress=False)
    assert (root / "movq" / "samples" / "step_000003.mp4").is_file()
    assert (root / "t2i" / "samples" / "step_000003.mp4").is_file()
    return {"movq": movq, "t2i": root / "t2i" / "final"}


def logged(out, column="loss"):
    import csv

    with (Path(out) / "log.csv").open() as log:
        return [float(row[column]) for row in csv.DictReader(log)]


@pytest.mark.parametrize("stage, data, model, folder", [  # each also writes a sample video
    ("keyframes", {"num_frames": 4}, {"temporal_variant": "conv1d-attn3d-blocks"}, "keyframe_unet"),
    ("interpolation", {"num_frames": 9}, {}, "interpolation_unet"),
    ("masked-interpolation", {"num_frames": 9}, {}, "masked_interpolation_unet"),
])
def test_unet_stages_train_and_write_pipeline_folders(trained, tmp_path, stage, data, model, folder):
    run = config(stage, tmp_path / stage, steps=3, data=data,
                 model={"movq_path": str(trained["movq"]), "init_from": str(trained["t2i"]), **model},
                 train={"sample_every": 3})
    result = train(run, progress=False)
    assert result["status"] == "finished" and result["step"] == 3
    assert (tmp_path / stage / "final" / folder / "config.json").is_file()
    assert len(logged(tmp_path / stage)) == 3
    from fusionframes.video_io import read_video
    frames = read_video(tmp_path / stage / "samples" / "step_000003.mp4")
    height = {"keyframes": 32}.get(stage, 64)  # interpolation samples stack truth over interpolation
    assert frames.shape == (data["num_frames"], height, 2 * 32, 3)


def test_keyframes_train_only_temporal_parameters(trained, tmp_path):
    from fusionframes.models import Kandinsky3UNet, KeyframeUNet

    run = config("keyframes", tmp_path / "k", steps=2, data={"num_frames": 3},
                 model={"movq_path": str(trained["movq"]), "init_from": str(trained["t2i"])},
                 train={"lr": 0.01})
    train(run, progress=False)
    t2i = Kandinsky3UNet.from_pretrained(trained["t2i"] / "unet")
    keyframes = KeyframeUNet.from_pretrained(tmp_path / "k" / "final" / "keyframe_unet")
    spatial = t2i.state_dict()
    for name, value in keyframes.state_dict().items():
        if name in spatial:
            assert torch.equal(value, spatial[name]), name  # frozen
    fresh = KeyframeUNet.from_t2i(t2i).state_dict()
    assert any(not torch.equal(value, fresh[name]) for name, value in keyframes.state_dict().items())


def test_keyframes_with_motion_conditioning_fit_a_classifier_and_learn_the_motion_embedding(trained, tmp_path):
    from fusionframes.models import KeyframeUNet
    from fusionframes.models.text import MotionClassifier
    from fusionframes.training.tasks import KeyframesTask

    # Three steps: the zero-init output layers pass no gradient back to the motion vectors before the third.
    run = config("keyframes", tmp_path / "k", steps=3, data={"num_frames": 3},
                 model={"movq_path": str(trained["movq"]), "init_from": str(trained["t2i"]),
                        "motion_conditioning": True, "motion_captions": 512},
                 train={"lr": 0.01, "sample_every": 3})
    task = KeyframesTask(run)
    assert task.motion_accuracy["seen"] >= 0.9 and task.motion_accuracy["unseen"] >= 0.7
    assert task.unet.config.motion_classes == 9
    batch = {"motion": ["left", "still", "up"]}
    assert task.motion(batch, torch.tensor([False, False, True])).tolist() == [0, 8, 9]  # 9: caption dropped
    train(run, progress=False)
    folder = tmp_path / "k" / "final" / "keyframe_unet"
    unet = KeyframeUNet.from_pretrained(folder)
    classifier = MotionClassifier.from_pretrained(folder / "motion_classifier")
    assert list(classifier.config.labels) == list(task.motion_classifier.config.labels)
    assert not torch.equal(unet.motion_embedding.weight, task.unet.motion_embedding.weight)  # trained
    assert torch.equal(unet.motion_embedding.weight[9], torch.zeros(unet.config.time_embed_dim))
    assert (tmp_path / "k" / "samples" / "step_000003.mp4").is_file()


def test_keyframes_go_on_training_a_trained_keyframe_unet(trained, tmp_path, monkeypatch):
    """``model.init_from`` naming a keyframes output continues its temporal parts, motion vectors and classifier
    (not fitted again); the spatial weights stay frozen; a config that describes another model is refused."""
    from fusionframes.models import KeyframeUNet, temporal_parameter_names
    from fusionframes.training import tasks

    motion = {"movq_path": str(trained["movq"]), "motion_conditioning": True, "motion_captions": 256}
    first = config("keyframes", tmp_path / "first", steps=3, data={"num_frames": 3},
                   model={**motion, "init_from": str(trained["t2i"])}, train={"lr": 0.01})
    train(first, progress=False)
    folder = tmp_path / "first" / "final" / "keyframe_unet"
    saved = KeyframeUNet.from_pretrained(folder).state_dict()

    def refit(*args):
        raise AssertionError("the classifier was fitted again")

    monkeypatch.setattr(tasks, "fit_motion_classifier", refit)
    going_on = config("keyframes", tmp_path / "more", steps=3, data={"num_frames": 3},
                      model={**motion, "init_from": str(tmp_path / "first" / "final")}, train={"lr": 0.01})
    task = tasks.KeyframesTask(going_on)
    assert all(torch.equal(saved[k], v) for k, v in task.unet.state_dict().items())
    classifier = load_file(folder / "motion_classifier" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(classifier[k], v) for k, v in task.motion_classifier.state_dict().items())
    projection = load_file(folder / "text_projection" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(projection[k], v) for k, v in task.text.projection.state_dict().items())
    train(going_on, progress=False)
    after = KeyframeUNet.from_pretrained(tmp_path / "more" / "final" / "keyframe_unet").state_dict()
    changed = {k for k in after if not torch.equal(after[k], saved[k])}
    assert "motion_embedding.weight" in changed
    assert changed <= set(temporal_parameter_names(task.unet))  # spatial weights frozen
    for model, message in (({"temporal_variant": "conv1d-attn3d-blocks"},
                             "holds conv1d-attn1d-blocks temporal parts; set model.temporal_variant: "
                             "conv1d-attn1d-blocks to go on training them (it is conv1d-attn3d-blocks)"),
                            ({"motion_conditioning": False},
                             "has motion classes: set model.motion_conditioning: true to go on training it"),
                            ({"prediction_type": "v_prediction"},
                             "so it must predict what that model predicts: "
                             f"{tmp_path / 'first' / 'final'} 'epsilon', keyframes 'v_prediction'")):
        with pytest.raises(FusionFramesError, match=re.escape(message)):
            tasks.KeyframesTask(config("keyframes", tmp_path / "x", data={"num_frames": 3},
                                       model={**motion, "init_from": str(tmp_path / "first" / "final"), **model}))


def test_keyframes_go_on_training_a_pipeline_folder_in_its_parameterisation(tmp_path):
    """A pipeline folder (here the default model) is a starting point too; what its keyframe U-Net predicts comes
    from its pipeline.json."""
    from fusionframes import DEFAULT_MODEL
    from fusionframes.training.tasks import KeyframesTask

    model = {"movq_path": str(DEFAULT_MODEL / "movq"), "init_from": str(DEFAULT_MODEL),
             "motion_conditioning": True}
    with pytest.raises(FusionFramesError, match="so it must predict what that model predicts: .*'v_prediction', "
                                                "keyframes 'epsilon'"):
        KeyframesTask(config("keyframes", tmp_path / "k", model=model))
    task = KeyframesTask(config("keyframes", tmp_path / "k", model={**model, "prediction_type": "v_prediction"}))
    assert task.unet.config.motion_classes == 9 and task.motion_classifier is not None
    assert sum(p.numel() for p in task.parameters() if p.requires_grad) \
        == sum(p.numel() for p in task.unet.parameters() if p.requires_grad)  # the temporal parts only


def test_interpolation_goes_on_training_a_trained_interpolation_unet(trained, tmp_path):
    """``model.init_from`` naming an interpolation output continues that U-Net (not inflated again from the T2I);
    another kind or parameterisation of U-Net is refused, naming the setting."""
    from fusionframes.models import InterpolationUNet
    from fusionframes.training.tasks import InterpolationTask, MaskedInterpolationTask

    model = {"movq_path": str(trained["movq"])}
    train(config("interpolation", tmp_path / "first", steps=2, data={"num_frames": 5},
                 model={**model, "init_from": str(trained["t2i"])}, train={"lr": 0.01}), progress=False)
    first = tmp_path / "first" / "final"
    saved = InterpolationUNet.from_pretrained(first / "interpolation_unet").state_dict()
    going_on = config("interpolation", tmp_path / "more", steps=2, data={"num_frames": 5},
                      model={**model, "init_from": str(first)}, train={"lr": 0.01})
    task = InterpolationTask(going_on)
    assert all(torch.equal(saved[k], v) for k, v in task.unet.state_dict().items())
    train(going_on, progress=False)
    after = InterpolationUNet.from_pretrained(tmp_path / "more" / "final" / "interpolation_unet").state_dict()
    assert any(not torch.equal(after[k], saved[k]) for k in saved)
    with pytest.raises(FusionFramesError, match=re.escape(
            f"{first} holds an interpolation U-Net that predicts 'v_prediction'; set model.prediction_type: "
            f"v_prediction in this stage's config to go on training it (it is 'sample')")):
        InterpolationTask(config("interpolation", tmp_path / "x", data={"num_frames": 5},
                                 model={**model, "init_from": str(first), "prediction_type": "sample"}))
    with pytest.raises(FusionFramesError, match=re.escape(
            "holds InterpolationUNet weights, which stage interpolation trains; this stage's config is stage "
            "masked-interpolation (MaskedInterpolationUNet)")):
        MaskedInterpolationTask(config("masked-interpolation", tmp_path / "x", data={"num_frames": 5},
                                       model={**model, "init_from": str(first)}))


def test_interpolation_goes_on_training_a_pipeline_folder_in_its_parameterisation(tmp_path):
    """A pipeline folder (here the default model) is a starting point too: what its interpolation U-Net is and
    predicts comes from the U-Net's config and the pipeline.json."""
    import shutil

    from fusionframes import DEFAULT_MODEL
    from fusionframes.training.tasks import InterpolationTask, MaskedInterpolationTask

    model = {"movq_path": str(DEFAULT_MODEL / "movq"), "init_from": str(DEFAULT_MODEL)}
    with pytest.raises(FusionFramesError, match="predicts 'sample'; set model.prediction_type: sample in this "
                                                "stage's config to go on training it .it is 'v_prediction'."):
        InterpolationTask(config("interpolation", tmp_path / "i", data={"num_frames": 5}, model=model))
    with pytest.raises(FusionFramesError, match="holds InterpolationUNet weights, which stage interpolation "
                                                "trains; this stage's config is stage masked-interpolation"):
        MaskedInterpolationTask(config("masked-interpolation", tmp_path / "i", data={"num_frames": 5},
                                       model={**model, "prediction_type": "sample"}))
    task = InterpolationTask(config("interpolation", tmp_path / "i", data={"num_frames": 5},
                                    model={**model, "prediction_type": "sample"}))
    shipped = load_file(DEFAULT_MODEL / "interpolation_unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(shipped[k].float(), v) for k, v in task.unet.state_dict().items())
    (tmp_path / "bare").mkdir()
    shutil.copyfile(DEFAULT_MODEL / "pipeline.json", tmp_path / "bare" / "pipeline.json")
    with pytest.raises(FusionFramesError, match="has no interpolation U-Net to go on training: .*interpolation_unet "
                                                "has no config.json"):
        InterpolationTask(config("interpolation", tmp_path / "i", data={"num_frames": 5},
                                 model={**model, "init_from": str(tmp_path / "bare"), "prediction_type": "sample"}))


def test_unet_stage_losses_take_the_configured_snr_weighting(trained, tmp_path):
    from fusionframes.diffusion import Schedule, diffusion_loss
    from fusionframes.training.tasks import Task

    model = {"movq_path": str(trained["movq"])}
    plain = Task(config("t2i", tmp_path, model=model))
    weighted = Task(config("t2i", tmp_path, model=model, train={"snr_gamma": 2.0}))
    x0, noise = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    prediction, t = noise + 0.1 * torch.randn(2, 4, 4, 4), torch.tensor([10, 900])
    expected = diffusion_loss(prediction, x0, noise, t, Schedule.cosine(1000), "epsilon", snr_gamma=2.0)
    torch.testing.assert_close(weighted.diffusion_loss(prediction, x0, noise, t), expected)
    assert not torch.allclose(plain.diffusion_loss(prediction, x0, noise, t), expected)


@pytest.mark.parametrize("stage, official", [("t2i", "epsilon"), ("keyframes", "epsilon"),
                                             ("interpolation", "v_prediction"),
                                             ("masked-interpolation", "v_prediction")])
def test_each_stage_predicts_the_official_parameterisation_unless_told(stage, official):
    from fusionframes.training.config import stage_prediction_type

    model = {"movq_path": "m", "init_from": "t"}
    assert stage_prediction_type(config(stage, "x", model=model)) == official
    told = config(stage, "x", model={**model, "prediction_type": "sample"})
    assert stage_prediction_type(told) == "sample"


def test_a_v_prediction_t2i_stage_trains_and_samples_with_v(trained, tmp_path, monkeypatch):
    """The loss and the training samples both read the configured parameterisation."""
    from fusionframes.diffusion import Schedule, diffusion_loss
    from fusionframes.training.tasks import T2ITask

    run = config("t2i", tmp_path / "v", steps=2, model={"movq_path": str(trained["movq"]), "unet": UNET,
                                                         "prediction_type": "v_prediction"},
                 train={"sample_every": 2})
    task = T2ITask(run)
    x0, noise = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    prediction, t = torch.randn(2, 4, 4, 4), torch.tensor([10, 900])
    torch.testing.assert_close(task.diffusion_loss(prediction, x0, noise, t),
                               diffusion_loss(prediction, x0, noise, t, Schedule.cosine(1000), "v_prediction"))
    from fusionframes.training import tasks

    used = []
    sample = tasks.sample_ancestral
    monkeypatch.setattr(tasks, "sample_ancestral", lambda *a, **k: used.append(a[3]) or sample(*a, **k))
    assert train(run, progress=False)["status"] == "finished"
    assert used == ["v_prediction"] and (tmp_path / "v" / "samples" / "step_000002.mp4").is_file()


def test_video_decoder_trains_temporal_parts_only(trained, tmp_path):
    run = config("video-decoder", tmp_path / "v", steps=2, data={"num_frames": 3},
                 model={"init_from": str(trained["movq"]), "video_decoder": "conv3x1x1"},
                 train={"batch_size": 1, "sample_every": 2})
    train(run, progress=False)
    image = load_file(trained["movq"] / "diffusion_pytorch_model.safetensors")
    video = load_file(tmp_path / "v" / "final" / "movq" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(video[k], v) for k, v in image.items())
    assert any("temporal" in k for k in set(video) - set(image))


def test_loss_falls(tmp_path):
    run = config("movq", tmp_path / "m", steps=30, model={"movq": MOVQ}, train={"lr": 1e-3, "batch_size": 4})
    train(run, progress=False)
    values = logged(tmp_path / "m")
    assert sum(values[-5:]) / 5 < 0.6 * sum(values[:5]) / 5
    from PIL import Image
    assert Image.open(tmp_path / "m" / "loss.png").size == (640, 360)


def test_resume_continues_exactly(trained, tmp_path):
    """2N steps in one go == N steps, stop, resume to 2N (data order, noise, optimizer, EMA all restored)."""
    def run(out, steps):
        return config("t2i", out, steps=steps, model={"movq_path": str(trained["movq"]), "unet": UNET},
                      train={"checkpoint_every": 2, "ema_decay": 0.9, "grad_accumulation": 2, "warmup_steps": 3})

    train(run(tmp_path / "once", 4), progress=False)
    first = train(run(tmp_path / "twice", 2), progress=False)
    assert first["step"] == 2
    with pytest.raises(FusionFramesError, match="already holds a run; pass --resume"):
        train(run(tmp_path / "twice", 4), progress=False)
    with (tmp_path / "twice" / "log.csv").open("a") as log:  # a step logged, then SIGKILL before a checkpoint
        log.write("3,9.999,0.0001,0.1\n")
    train(run(tmp_path / "twice", 4), resume=True, progress=False)
    for part in ("unet/diffusion_pytorch_model.safetensors", "null_embedding.safetensors"):
        a, b = load_file(tmp_path / "once" / "final" / part), load_file(tmp_path / "twice" / "final" / part)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    assert logged(tmp_path / "once") == logged(tmp_path / "twice")
    with pytest.raises(FusionFramesError, match="--resume: no checkpoint"):
        train(run(tmp_path / "fresh", 2), resume=True, progress=False)


def test_sigterm_checkpoints_and_resume_finishes(tmp_path):
    path = tmp_path / "run.yaml"
    import yaml
    path.write_text(yaml.safe_dump({"stage": "movq", "output_dir": str(tmp_path / "out"),
                                    "data": {"size": 32, "length": 64}, "model": {"movq": MOVQ},
                                    "train": {"steps": 100000, "batch_size": 1, "log_every": 1,
                                              "checkpoint_every": 100000}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "fusionframes", "train", "movq", "--config", str(path),
                              "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "out" / "log.csv"
    deadline = time.time() + 120
    while (not log.exists() or len(log.read_text().splitlines()) < 3) and time.time() < deadline:
        time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "stopped by SIGTERM" in out
    state = json.loads((tmp_path / "out" / "checkpoint" / "trainer_state.json").read_text())
    assert 2 <= state["step"] < 100000
    assert not (tmp_path / "out" / "checkpoint.tmp").exists()


@pytest.mark.parametrize("values, message", [
    ({"stage": "t2i", "output_dir": "x", "trian": {}}, "unknown config key 'trian' (did you mean 'train'?)"),
    ({"stage": "t2i", "output_dir": "x", "train": {"stpes": 3}}, "unknown config key 'train.stpes' (did you mean"),
    ({"stage": "t2i", "output_dir": "x", "train": {"steps": "many"}}, "'train.steps' should be int, got 'many'"),
    ({"stage": "t2i"}, "missing required key(s): output_dir"),
    ({"stage": "t3i", "output_dir": "x"}, "unknown stage 't3i'"),
    ({"stage": "keyframes", "output_dir": "x", "model": {"movq_path": "m"}}, "set model.init_from"),
    ({"stage": "t2i", "output_dir": "x"}, "set model.movq_path"),
    ({"stage": "movq", "output_dir": "x", "train": {"mixed_precision": "fp8"}}, "mixed_precision must be"),
    ({"stage": "movq", "output_dir": "x", "train": {"mixed_precision": False}},
     "should be str, got False (YAML reads unquoted no/yes/on/off as booleans: quote the word)"),
    ({"stage": "t2i", "output_dir": "x", "data": {"encode_dtype": "int8"}, "model": {"movq_path": "m"}},
     "data.encode_dtype must be one of float32, bfloat16, float16 (or null: as train.mixed_precision), got 'int8'"),
    ({"stage": "movq", "output_dir": "x", "data": {"encode_dtype": "bfloat16"}},
     "stage movq trains the autoencoder itself (use train.mixed_precision)"),
    ({"stage": "movq", "output_dir": "x", "train": {"lr_schedule": "exponential"}},
     "train.lr_schedule must be one of constant, cosine, linear, got 'exponential'"),
    ({"stage": "t2i", "output_dir": "x", "model": {"movq_path": "m", "keyframe_init": "ones"}},
     "model.keyframe_init must be one of zeros, t2i, got 'ones'"),
    ({"stage": "t2i", "output_dir": "x", "model": {"movq_path": "m", "prediction_type": "x0"}},
     "model.prediction_type must be one of epsilon, v_prediction, sample, got 'x0'"),
    ({"stage": "t2i", "output_dir": "x", "model": {"movq_path": "m", "motion_conditioning": True}},
     "model.motion_conditioning is a keyframes-stage option (stage t2i)"),
    ({"stage": "keyframes", "output_dir": "x", "data": {"source": "videos", "path": "v"},
      "model": {"movq_path": "m", "init_from": "t", "motion_conditioning": True}},
     "model.motion_conditioning learns from each clip's motion label, which only procedural data has"),
    ({"stage": "keyframes", "output_dir": "x",
      "model": {"movq_path": "m", "init_from": "t", "motion_conditioning": True, "motion_captions": 10}},
     "model.motion_captions must be at least 64, got 10"),
])
def test_config_errors_name_the_key(values, message):
    with pytest.raises(FusionFramesError, match=re.escape(message)):
        load_config(values)


@pytest.mark.parametrize("schedule, factors", [
    ("constant", [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),  # the paper's, as before the option
    ("linear", [0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0]),
    ("cosine", [0.25, 0.5, 0.75, 1.0, 1.0, 0.9330127, 0.75, 0.5, 0.25, 0.0669873, 0.0]),
])
def test_the_learning_rate_warms_up_then_holds_or_decays_to_zero_at_train_steps(schedule, factors):
    from fusionframes.training.loop import lr_factor

    t = config("movq", "x", steps=10, train={"warmup_steps": 4, "lr_schedule": schedule}).train
    assert [lr_factor(t, step) for step in range(11)] == pytest.approx(factors)


def test_a_decaying_learning_rate_is_what_the_run_logs(tmp_path):
    train(config("movq", tmp_path / "m", steps=4, model={"movq": MOVQ}, train={"lr_schedule": "linear"}),
          progress=False)
    assert logged(tmp_path / "m", "lr") == pytest.approx([0.75e-4, 0.5e-4, 0.25e-4, 0.0])


def test_train_cli_errors(tmp_path, capsys):
    assert main(["train", "movq", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("stage: [unclosed")
    assert main(["train", "movq", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    (tmp_path / "t2i.yaml").write_text("stage: movq\noutput_dir: x\n")
    assert main(["train", "t2i", "--config", str(tmp_path / "t2i.yaml")]) == 2
    assert "configures stage 'movq', not 't2i'" in capsys.readouterr().err


def test_two_processes_keep_identical_weights_and_write_once(tmp_path):
    """torchrun (what `accelerate launch --multi_gpu` runs) with 2 CPU processes: DDP over gloo."""
    import yaml
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"stage": "movq", "output_dir": str(tmp_path / "out"),
                                    "data": {"size": 32, "length": 64}, "model": {"movq": MOVQ},
                                    "train": {"steps": 3, "batch_size": 1, "log_every": 1, "checkpoint_every": 2}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "-m", "fusionframes", "train", "movq", "--config", str(path), "--quiet", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # only rank 0 reports
    assert summaries[0]["processes"] == 2 and summaries[0]["replicas_identical"]
    assert len((tmp_path / "out" / "log.csv").read_text().splitlines()) == 4  # header + 3 steps, written once
    checkpoint = tmp_path / "out" / "checkpoint"
    assert sorted(p.name for p in checkpoint.glob("random_states_*.pkl")) == ["random_states_0.pkl",
                                                                              "random_states_1.pkl"]


SHIPPED = sorted(p for p in (ROOT / "configs").glob("*/*.yaml") if p.parent.name != "accelerate")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_configs_are_valid(path):
    stage = path.stem.split("-", 1)[1] if path.stem[0].isdigit() else path.stem  # recipes: "3-t2i"
    assert load_config(path).stage == stage


def test_trains_on_video_files_through_corrupt_ones(tmp_path):
    """A folder of real H.264 files with captions, one of them corrupt: trained through, reported."""
    import numpy as np
    import warnings

    from fusionframes.video_io import write_video

    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        frames = np.repeat(rng.integers(0, 255, (72, 1, 1, 3), dtype=np.uint8), 48 * 64, axis=1).reshape(72, 48, 64, 3)
        write_video(frames, videos / f"clip{i}.mp4", fps=24)
        (videos / f"clip{i}.txt").write_text(f"a flickering clip number {i}")
    (videos / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    (videos / "broken.txt").write_text("broken")
    run = config("movq", tmp_path / "out", steps=2, data={"source": "videos", "path": str(videos)},
                 model={"movq": MOVQ})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train(run, progress=False)["status"] == "finished"
    assert any("broken.mp4" in str(w.message) for w in caught)
    with pytest.raises(FusionFramesError, match="needs data.path"):
        train(config("movq", tmp_path / "x", data={"source": "videos"}, model={"movq": MOVQ}), progress=False)


def test_encoder_cache_reproduces_and_refuses_a_stale_cache(trained, tmp_path):
    def run(out, cache, movq=trained["movq"]):
        return config("keyframes", out, steps=3, data={"num_frames": 3, "cache_dir": str(cache)},
                      model={"movq_path": str(movq), "init_from": str(trained["t2i"])})

    plain = config("keyframes", tmp_path / "plain", steps=3, data={"num_frames": 3},
                   model={"movq_path": str(trained["movq"]), "init_from": str(trained["t2i"])})
    train(plain, progress=False)
    train(run(tmp_path / "cold", tmp_path / "cache"), progress=False)
    entries = sorted((tmp_path / "cache" / "latents").glob("*.safetensors"))
    assert len(entries) == 6 and (tmp_path / "cache" / "text" / "identity.json").is_file()  # 3 steps × 2 clips
    stamp = {p: p.stat().st_mtime_ns for p in entries}
    train(run(tmp_path / "warm", tmp_path / "cache"), progress=False)
    assert {p: p.stat().st_mtime_ns for p in entries} == stamp  # read, not rewritten
    assert logged(tmp_path / "plain") == logged(tmp_path / "cold") == logged(tmp_path / "warm")
    other = tmp_path / "other-movq"
    import shutil
    shutil.copytree(trained["movq"], other)
    from fusionframes.models.movq import MoVQ
    movq = MoVQ.from_pretrained(other)
    with torch.no_grad():
        movq.quant_conv.bias.add_(1.0)
    movq.save_pretrained(other)
    with pytest.raises(FusionFramesError, match="made by another encoder or data recipe"):
        train(run(tmp_path / "stale", tmp_path / "cache", movq=other), progress=False)


def test_bfloat16_encoding_gives_close_latents_in_a_cache_of_its_own(trained, tmp_path):
    def run(name, dtype, cache):
        return config("keyframes", tmp_path / name, steps=1,
                      data={"num_frames": 3, "cache_dir": str(tmp_path / cache), "encode_dtype": dtype},
                      model={"movq_path": str(trained["movq"]), "init_from": str(trained["t2i"])})

    def cached(cache):
        return [load_file(p)["latents"] for p in sorted((tmp_path / cache / "latents").glob("*.safetensors"))]

    train(run("full", "float32", "full"), progress=False)
    with pytest.raises(FusionFramesError, match="made by another encoder or data recipe"):
        train(run("mixed", "bfloat16", "full"), progress=False)
    train(run("half", "bfloat16", "half"), progress=False)
    full, half = cached("full"), cached("half")
    assert len(full) == len(half) == 2
    for a, b in zip(full, half):
        assert a.dtype == b.dtype == torch.float32
        assert 0 < (a - b).abs().max() < 0.05 * a.abs().max()  # bf16 rounding, not another encoder


def test_encode_dtype_holds_inside_mixed_precision(trained, tmp_path):
    """float32 encodes in float32 even inside train.mixed_precision's autocast; unset, it follows that setting."""
    from fusionframes.training.tasks import Task

    frames = torch.rand(2, 3, 32, 32) * 2 - 1

    def latents(mixed, dtype):
        task = Task(config("t2i", tmp_path, model={"movq_path": str(trained["movq"])},
                           data={"encode_dtype": dtype}, train={"mixed_precision": mixed}))
        with torch.autocast("cpu", torch.bfloat16, enabled=mixed == "bf16"):  # as accelerate runs the forward
            return task.latents({"frames": frames})

    full = latents("no", None)
    assert torch.equal(latents("bf16", "float32"), full)
    assert torch.equal(latents("bf16", None), latents("no", "bfloat16"))
    assert not torch.equal(latents("bf16", None), full)


def test_adversarial_losses_reach_only_their_own_network():
    from fusionframes.training.adversarial import PatchDiscriminator, adversarial_losses

    torch.manual_seed(0)
    discriminator = PatchDiscriminator(3, channels=8)
    real = torch.randn(2, 3, 32, 32)
    fake = torch.randn(2, 3, 32, 32, requires_grad=True)
    generator_loss, discriminator_loss = adversarial_losses(discriminator, real, fake)
    generator_loss.backward(retain_graph=True)
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in discriminator.parameters())  # the generator term leaves D alone
    fake.grad = None
    discriminator_loss.backward()
    assert fake.grad is None  # the discriminator term leaves the generator alone
    assert all(p.grad is not None for p in discriminator.parameters())


def test_movq_trains_with_the_discriminator(tmp_path):
    run = config("movq", tmp_path / "gan", steps=3, model={"movq": MOVQ, "discriminator_weight": 0.1,
                                                            "discriminator_start": 1})
    assert train(run, progress=False)["status"] == "finished"
    assert len(logged(tmp_path / "gan")) == 3


def test_trains_from_tar_shards_and_resumes_the_stream_exactly(tmp_path):
    import io
    import tarfile

    import numpy as np

    from fusionframes.video_io import write_video

    rng = np.random.default_rng(1)
    for s in range(2):
        with tarfile.open(tmp_path / f"shard-{s}.tar", "w") as tar:
            for k in range(3):
                frames = np.repeat(rng.integers(0, 255, (30, 1, 1, 3), dtype=np.uint8), 32 * 32, axis=1)
                path = write_video(frames.reshape(30, 32, 32, 3), tmp_path / "tmp" / f"{s}{k}.mp4", fps=24)
                for name, data in ((f"{s}{k}.mp4", path.read_bytes()), (f"{s}{k}.txt", f"clip {s}{k}".encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))

    def run(out, steps):
        return config("movq", out, steps=steps, data={"source": "shards", "path": str(tmp_path / "shard-{0..1}.tar")},
                      model={"movq": MOVQ}, train={"checkpoint_every": 2})

    train(run(tmp_path / "once", 4), progress=False)
    train(run(tmp_path / "twice", 2), progress=False)
    state = json.loads((tmp_path / "twice" / "checkpoint" / "trainer_state.json").read_text())
    assert state["streams"] == [{"start": 4, "epoch_start": 0}]  # 2 steps × batch 2 read from the stream
    train(run(tmp_path / "twice", 4), resume=True, progress=False)
    a = load_file(tmp_path / "once" / "final" / "movq" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "twice" / "final" / "movq" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lpips_from_local_weights(perceptual_files, tmp_path):
    from fusionframes.training.perceptual import PerceptualLoss

    lpips = PerceptualLoss.from_files(perceptual_files["vgg16"], perceptual_files["lpips"])
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert lpips(x, x).item() == 0.0 and lpips(x, y).item() > 0
    torch.testing.assert_close(lpips(x, y), lpips(y, x))
    x.requires_grad_(True)
    lpips(x, y).backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is None for p in lpips.parameters())
    with pytest.raises(FusionFramesError, match="perceptual-loss weights not found"):
        PerceptualLoss.from_files(tmp_path / "none.pth", perceptual_files["lpips"])
    with pytest.raises(FusionFramesError, match="LPIPS weights do not fit"):
        PerceptualLoss.from_files(perceptual_files["vgg16"], perceptual_files["vgg16"])


def test_movq_trains_with_lpips(perceptual_files, tmp_path):
    run = config("movq", tmp_path / "p", steps=2, model={"movq": MOVQ, "perceptual_weights": perceptual_files})
    assert train(run, progress=False)["status"] == "finished"
    with pytest.raises(FusionFramesError, match="exactly the keys vgg16 and lpips"):
        train(config("movq", tmp_path / "q", model={"movq": MOVQ, "perceptual_weights": {"vgg": "x"}}),
              progress=False)


def test_sigkill_loses_at_most_the_steps_since_the_checkpoint(tmp_path):
    """Kill -9 mid-run, resume: the weights equal an uninterrupted run's."""
    import yaml

    def write(name, steps):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"stage": "movq", "output_dir": str(tmp_path / name),
                                        "data": {"size": 32, "length": 64}, "model": {"movq": MOVQ},
                                        "train": {"steps": steps, "batch_size": 1, "log_every": 1,
                                                  "checkpoint_every": 3}}))
        return path

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "fusionframes", "train", "movq", "--quiet", "--config"]
    killed = write("killed", 12)
    child = subprocess.Popen(command + [str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = tmp_path / "killed" / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 120
    while not (state.exists() and json.loads(state.read_text())["step"] >= 3) and time.time() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    step = json.loads(state.read_text())["step"]
    assert child.returncode == -signal.SIGKILL and 3 <= step < 12
    done = subprocess.run(command + [str(killed), "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    subprocess.run(command + [str(write("whole", 12))], env=env, check=True, capture_output=True, timeout=300)
    a = load_file(tmp_path / "killed" / "final" / "movq" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "whole" / "final" / "movq" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert logged(tmp_path / "killed") == logged(tmp_path / "whole")


def test_bf16_mixed_precision_trains(trained, tmp_path):
    """In its own process: accelerate fixes the precision once per process."""
    import yaml
    path = tmp_path / "bf16.yaml"
    path.write_text(yaml.safe_dump({"stage": "keyframes", "output_dir": str(tmp_path / "bf16"),
                                    "data": {"size": 32, "length": 64, "num_frames": 3},
                                    "model": {"movq_path": str(trained["movq"]), "init_from": str(trained["t2i"])},
                                    "train": {"steps": 2, "batch_size": 2, "log_every": 1,
                                              "mixed_precision": "bf16"}}))
    done = subprocess.run([sys.executable, "-m", "fusionframes", "train", "keyframes", "--config", str(path),
                           "--quiet"], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(0 < value < 10 for value in logged(tmp_path / "bf16"))


def test_a_recipe_runs_in_order_resumes_and_assembles_a_pipeline(tmp_path, monkeypatch, capsys):
    """configs/default in miniature: movq → video decoder → t2i → keyframes → interpolation → interpolation
    continued → pipeline folder (with the last interpolation stage's U-Net)."""
    import yaml

    from fusionframes.pipeline import FusionFramesPipeline

    recipe = tmp_path / "recipe"
    recipe.mkdir()
    data = {"size": 32, "length": 64}
    stages = [
        ("1-movq", {"stage": "movq", "model": {"movq": MOVQ}}),
        ("2-video-decoder", {"stage": "video-decoder", "data": {**data, "num_frames": 3},
                             "model": {"init_from": "runs/movq/final/movq", "video_decoder": "conv3x1x1"}}),
        ("3-t2i", {"stage": "t2i", "model": {"movq_path": "runs/movq/final/movq", "unet": UNET}}),
        ("4-keyframes", {"stage": "keyframes", "data": {**data, "num_frames": 3},
                         "model": {"movq_path": "runs/movq/final/movq", "init_from": "runs/t2i/final",
                                   "motion_conditioning": True, "motion_captions": 64}}),
        ("5-interpolation", {"stage": "interpolation", "data": {**data, "num_frames": 5},
                             "model": {"movq_path": "runs/movq/final/movq", "init_from": "runs/t2i/final",
                                       "prediction_type": "sample"}}),
        ("5b-interpolation", {"stage": "interpolation", "output_dir": "runs/interpolation-b",
                              "data": {**data, "num_frames": 5, "seed": 6},
                              "model": {"movq_path": "runs/movq/final/movq", "init_from": "runs/interpolation/final",
                                        "prediction_type": "sample"}, "train": {"steps": 2, "batch_size": 1,
                                                                                "ema_decay": 0.9}}),
    ]
    for name, values in stages:
        values = {"output_dir": f"runs/{values['stage']}", "data": data,
                  "train": {"steps": 2, "batch_size": 1, "log_every": 1}, **values}
        (recipe / f"{name}.yaml").write_text(yaml.safe_dump(values))
    monkeypatch.chdir(tmp_path)
    settings = json.dumps({"num_keyframes": 2, "height": 32, "width": 32, "num_inference_steps": 2,
                           "interpolation_steps": 2})
    assert main(["train-recipe", str(recipe), "--output", "model", "--settings", settings]) == 0
    full = FusionFramesPipeline.from_pretrained(tmp_path / "model")
    full.progress = False
    assert full.defaults["interpolation_prediction_type"] == "sample"  # from the stage, not from --settings
    last = load_file(tmp_path / "runs/interpolation-b/final/interpolation_unet/diffusion_pytorch_model.safetensors")
    first = load_file(tmp_path / "runs/interpolation/final/interpolation_unet/diffusion_pytorch_model.safetensors")
    assert all(torch.equal(p, last[name]) for name, p in full.interpolation_unet.state_dict().items())
    assert not all(torch.equal(first[name], last[name]) for name in last)  # so the pipeline took stage 5b's
    (recipe / "MODEL_CARD.md").write_text("model card")
    weights = lambda: sum(f.stat().st_size for f in (tmp_path / "model").rglob("*.safetensors"))  # noqa: E731
    size = weights()
    assert main(["train-recipe", str(recipe), "--output", "model", "--settings", settings,
                 "--weights-dtype", "float16"]) == 0  # every stage done before: only reassembled
    assert capsys.readouterr().out.count("done before") == 6
    assert (tmp_path / "model" / "README.md").read_text() == "model card"
    assert 0.45 < weights() / size < 0.55
    pipe = FusionFramesPipeline.from_pretrained(tmp_path / "model")
    assert pipe.movq.config.video_decoder == "conv3x1x1"
    assert pipe.motion_classifier is not None and pipe.keyframe_unet.config.motion_classes == 9
    assert {p.dtype for p in pipe.keyframe_unet.parameters()} == {torch.float32} == {pipe.null_embedding.dtype}
    pipe.progress = False
    run = lambda p: p("a red ball", fps="medium", output_type="np",  # noqa: E731
                      generator=torch.Generator().manual_seed(0)).frames
    frames = run(pipe)
    assert frames.shape == (1, 5, 32, 32, 3)
    assert np.abs(frames - run(full)).max() < 0.05  # float16 storage: rounding of the weights only
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    for extra, message in ((["--weights-dtype", "float12"], "unknown --weights-dtype 'float12'"),
                           (["--settings", '{"num_keyframe": 3}'], "unknown pipeline settings ['num_keyframe']"),
                           (["--settings", '{"sampler": "dpmpp"}'], "unknown sampler 'dpmpp' in --settings"),
                           (["--settings", '{"interpolation_prediction_type": "v_prediction"}'],
                            "interpolation_prediction_type='v_prediction' contradicts the recipe, whose stage "
                            "trains 'sample'"),
                           (["--output", "notes"], "notes is not empty and not a pipeline folder")):
        assert main(["train-recipe", str(recipe), "--output", "other"] + extra) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "other").exists()
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"


def test_a_recipe_whose_keyframes_predict_otherwise_than_their_t2i_is_refused(tmp_path):
    """The keyframes stage is checked against the T2I stage it starts from: here an ε model fine-tuned into v."""
    from fusionframes.training.recipe import implied_settings, recipe_configs

    stages = {"3-t2i": {"stage": "t2i", "model": {"movq_path": "m"}},
              "3v-t2i": {"stage": "t2i", "model": {"movq_path": "m", "init_from": "3-t2i/final",
                                                   "prediction_type": "v_prediction"}},
              "4-keyframes": {"stage": "keyframes", "model": {"movq_path": "m", "init_from": "./3v-t2i/final/"}},
              "5-interpolation": {"stage": "interpolation", "model": {"movq_path": "m", "init_from": "3v-t2i/final"}}}

    def write():
        for name, values in stages.items():
            (tmp_path / f"{name}.yaml").write_text(json.dumps({"output_dir": name, **values}))

    write()
    with pytest.raises(FusionFramesError, match=re.escape(
            "the keyframes stage trains temporal blocks on the frozen T2I model, so it must predict what that model "
            "predicts: 3v-t2i.yaml 'v_prediction', 4-keyframes.yaml 'epsilon'")):
        recipe_configs(tmp_path)
    stages["4-keyframes"]["model"]["init_from"] = "3-t2i/final"  # the ε parent: now it agrees
    write()
    assert [c.stage for c in recipe_configs(tmp_path)] == ["t2i", "t2i", "keyframes", "interpolation"]
    stages["4-keyframes"]["model"].update(init_from="3v-t2i/final", prediction_type="v_prediction")
    write()
    assert implied_settings(tmp_path) == {"keyframe_prediction_type": "v_prediction",
                                          "interpolation_prediction_type": "v_prediction"}
    # A parent outside the recipe is checked through its run's config.json.
    (tmp_path / "elsewhere" / "final").mkdir(parents=True)
    (tmp_path / "elsewhere" / "config.json").write_text(json.dumps({"output_dir": "elsewhere", **stages["3-t2i"]}))
    stages["4-keyframes"]["model"]["init_from"] = str(tmp_path / "elsewhere" / "final")
    write()
    with pytest.raises(FusionFramesError, match="final 'epsilon', 4-keyframes.yaml 'v_prediction'"):
        recipe_configs(tmp_path)
    # A keyframes stage going on from another is checked against that one.
    stages["4-keyframes"]["model"]["init_from"] = "3v-t2i/final"
    stages["4b-keyframes"] = {"stage": "keyframes", "model": {"movq_path": "m", "init_from": "4-keyframes/final"}}
    write()
    with pytest.raises(FusionFramesError, match="4-keyframes.yaml 'v_prediction', 4b-keyframes.yaml 'epsilon'"):
        recipe_configs(tmp_path)
    stages["4b-keyframes"]["model"].update(prediction_type="v_prediction", motion_conditioning=True)
    write()
    with pytest.raises(FusionFramesError, match=re.escape(
            "4-keyframes.yaml has no motion classes: set model.motion_conditioning: false to go on training it")):
        recipe_configs(tmp_path)  # refused before any stage trains
    del stages["4b-keyframes"]
    (tmp_path / "4b-keyframes.yaml").unlink()
    # An interpolation stage going on from a pipeline folder: checked against its pipeline.json.
    from fusionframes import DEFAULT_MODEL
    stages["5-interpolation"]["model"]["init_from"] = str(DEFAULT_MODEL)
    write()
    with pytest.raises(FusionFramesError, match=re.escape(
            "holds an interpolation U-Net that predicts 'sample'; set model.prediction_type: sample in "
            "5-interpolation.yaml to go on training it (it is 'v_prediction')")):
        recipe_configs(tmp_path)
    # One going on from another of this recipe: checked against that stage's config.
    stages["5-interpolation"]["model"]["init_from"] = "3v-t2i/final"
    stages["5b-interpolation"] = {"stage": "masked-interpolation",
                                  "model": {"movq_path": "m", "init_from": "5-interpolation/final"}}
    write()
    with pytest.raises(FusionFramesError, match=re.escape(
            "5b-interpolation.yaml (stage masked-interpolation) cannot go on training the interpolation U-Net of "
            "5-interpolation.yaml")):
        recipe_configs(tmp_path)
    stages["5b-interpolation"].update(stage="interpolation", model={"movq_path": "m", "prediction_type": "sample",
                                                                    "init_from": "5-interpolation/final"})
    write()
    with pytest.raises(FusionFramesError, match=re.escape(
            "5-interpolation.yaml holds an interpolation U-Net that predicts 'v_prediction'; set "
            "model.prediction_type: v_prediction in 5b-interpolation.yaml")):
        recipe_configs(tmp_path)
    del stages["5b-interpolation"]["model"]["prediction_type"]
    write()
    assert [c.stage for c in recipe_configs(tmp_path)][-2:] == ["interpolation", "interpolation"]


def test_a_t2i_stage_fine_tunes_another_into_v(trained, tmp_path):
    """``model.init_from`` on the t2i stage starts from that model's U-Net and text projection (SD 2's ε → v); the
    result samples without its parent, and keyframes on it must predict v too."""
    import shutil

    from fusionframes.models import Kandinsky3UNet
    from fusionframes.training.tasks import KeyframesTask, T2ITask

    shutil.copytree(trained["t2i"].parent, tmp_path / "parent")
    run = config("t2i", tmp_path / "v", steps=2, model={"movq_path": str(trained["movq"]),
                                                         "init_from": str(tmp_path / "parent" / "final"),
                                                         "prediction_type": "v_prediction"})
    task = T2ITask(run)
    assert task.prediction_type == "v_prediction"
    parent = Kandinsky3UNet.from_pretrained(trained["t2i"] / "unet").state_dict()
    assert all(torch.equal(parent[k], v) for k, v in task.unet.state_dict().items())
    projection = load_file(trained["t2i"] / "text_projection" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(projection[k], v) for k, v in task.text.projection.state_dict().items())
    assert train(run, progress=False)["status"] == "finished"
    shutil.rmtree(tmp_path / "parent")
    assert T2ITask.from_run(tmp_path / "v").prediction_type == "v_prediction"
    keyframes = {"movq_path": str(trained["movq"]), "init_from": str(tmp_path / "v" / "final")}
    with pytest.raises(FusionFramesError, match="so it must predict what that model predicts: .* 'v_prediction', "
                                                "keyframes 'epsilon'"):
        KeyframesTask(config("keyframes", tmp_path / "k", data={"num_frames": 3}, model=keyframes))
    KeyframesTask(config("keyframes", tmp_path / "k", data={"num_frames": 3},
                         model={**keyframes, "prediction_type": "v_prediction"}))
    with pytest.raises(FusionFramesError, match="a t2i stage with model.init_from fine-tunes that model, whose "
                                                "architecture it keeps: remove model.unet"):
        load_config({"stage": "t2i", "output_dir": "c", "model": {"movq_path": "m", "init_from": "p",
                                                                   "unet": UNET}})


def test_eval_t2i_reads_every_colour_and_shape_prompt(trained, tmp_path, capsys):
    run = trained["t2i"].parent
    assert main(["eval", "t2i", "--model", str(run), "--steps", "2", "--seeds", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 64 and len(report["per_image"]) == 64  # 8 colours × 4 shapes × 2 seeds
    assert {r["prompt"] for r in report["per_image"]} >= {"a red circle", "a white star"}
    assert set(report["accuracy"]) == {"color", "shape", "background"}
    assert report["settings"]["prediction_type"] == "epsilon" and report["settings"]["threshold_range"] == 1.0
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((run / "config.json").read_text())
    for folder, message in ((tmp_path / "none", "is not a training run folder (no config.json)"),
                            (trained["movq"].parents[1], "holds a movq run; name a t2i stage's output_dir"),
                            (unfinished, "(is the run finished?) not found")):
        assert main(["eval", "t2i", "--model", str(folder)]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("train_values, message", [
    ({"log_every": 0}, "train.log_every must be at least 1"),
    ({"steps": 0}, "train.steps must be at least 1"),
    ({"caption_dropout": 1.5}, "train.caption_dropout is a rate in [0, 1]"),
    ({"max_perturbation": 1000}, "train.max_perturbation must lie in [0, 999]"),
    ({"snr_gamma": 0}, "train.snr_gamma must be > 0"),
])
def test_numbers_out_of_range_are_config_errors(train_values, message):
    with pytest.raises(FusionFramesError, match=re.escape(message)):
        load_config({"stage": "movq", "output_dir": "x", "train": train_values})


def test_resume_refuses_a_changed_config_and_recovers_an_interrupted_swap(tmp_path):
    def run(**train_values):
        return config("movq", tmp_path / "r", steps=2, model={"movq": MOVQ}, train=train_values)

    train(run(checkpoint_every=1), progress=False)
    with pytest.raises(FusionFramesError, match=r"changed config \(train.lr\)"):
        train(run(checkpoint_every=1, lr=0.5), resume=True, progress=False)
    # A run saved before an option existed resumes: the option compares at its default. Before format 2 every
    # stage stored prediction_type "v_prediction", which only the interpolation stages read.
    saved = tmp_path / "r" / "config.json"
    values = json.loads(saved.read_text())
    assert values.pop("format") == 2 and values["model"]["prediction_type"] is None
    del values["train"]["sample_threshold_range"], values["model"]["keyframe_init"]
    values["model"]["prediction_type"] = "v_prediction"
    saved.write_text(json.dumps(values))
    assert train(run(checkpoint_every=1, steps=3), resume=True, progress=False)["step"] == 3
    checkpoint = tmp_path / "r" / "checkpoint"
    os.replace(checkpoint, checkpoint.with_name("checkpoint.old"))  # killed between the two renames
    result = train(config("movq", tmp_path / "r", steps=3, model={"movq": MOVQ}), resume=True, progress=False)
    assert result["step"] == 3 and (checkpoint / "trainer_state.json").is_file()
    with pytest.raises(FusionFramesError, match="model configuration does not fit stage movq"):
        train(config("movq", tmp_path / "bad", model={"movq": {"chh": 32}}), progress=False)
