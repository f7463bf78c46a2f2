"""The whole pipeline with tiny random components (real all-MiniLM-L6-v2 text encoder) on the CPU."""

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from fusionframes import FusionFramesError
from fusionframes.cli import main
from fusionframes.models import InterpolationUNet, Kandinsky3UNet, KeyframeUNet
from fusionframes.models.movq import MoVQ
from fusionframes.pipeline import (PACKAGED_TEXT_ENCODER, FusionFramesPipeline, frames_per_level,
                                   load_text_encoder, scheduler_config)
from tests.conftest import SETTINGS, UNET, randomize

def seeded(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("fps, fps_value", [("low", 2), ("medium", 8), ("high", 30)])
def test_frame_counts_for_every_fps(pipe, fps, fps_value):
    out = pipe("a red ball", fps=fps, output_type="np", generator=seeded(0))
    assert out.frames.shape == (1, frames_per_level(3)[fps], 16, 16, 3) and out.fps == fps_value
    assert frames_per_level(3) == {"low": 3, "medium": 9, "high": 33}
    assert out.frames.min() >= 0 and out.frames.max() <= 1


def test_output_types(pipe):
    pil = pipe("a red ball", output_type="pil", generator=seeded(0)).frames
    assert len(pil) == 1 and len(pil[0]) == 3 and pil[0][0].size == (16, 16)
    assert pipe("a red ball", output_type="pt", generator=seeded(0)).frames.shape == (1, 3, 3, 16, 16)
    latents = pipe("a red ball", output_type="latent", generator=seeded(0), fps="medium").frames
    assert latents.shape == (1, 4, 9, 8, 8)
    # keyframes sit at every 4th frame after interpolation
    keyframes = pipe("a red ball", output_type="latent", generator=seeded(0)).frames
    torch.testing.assert_close(latents[:, :, ::4], keyframes)


def test_seeds_reproduce_and_differ(pipe):
    a = pipe("a red ball", fps="medium", output_type="pt", generator=seeded(7)).frames
    b = pipe("a red ball", fps="medium", output_type="pt", generator=seeded(7)).frames
    c = pipe("a red ball", fps="medium", output_type="pt", generator=seeded(8)).frames
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_a_seed_reproduces_its_video_anywhere_in_a_batch(pipe):
    prompts = ["a red ball", "a much longer prompt about a blue square drifting slowly upward"]
    batch = pipe(prompts, fps="medium", output_type="pt", generator=seeded(1, 2)).frames
    for i, (prompt, seed) in enumerate(zip(prompts, (1, 2))):
        single = pipe(prompt, fps="medium", output_type="pt", generator=seeded(seed)).frames
        torch.testing.assert_close(batch[i:i + 1], single, atol=1e-5, rtol=1e-5)
    two = pipe("a red ball", num_videos_per_prompt=2, output_type="pt", generator=seeded(5, 6)).frames
    assert two.shape[0] == 2 and not torch.allclose(two[0], two[1])


def test_prompt_context_is_cut_to_its_tokens_plus_one(pipe):
    (context, mask), = pipe.encode_prompt(["a red ball"])  # [CLS] a red ball [SEP] + one zero slot
    assert context.shape == (6, 64) and mask.tolist() == [True] * 5 + [False]
    assert torch.equal(context[-1], torch.zeros(64))
    null, null_mask = pipe._unconditional(context)
    assert torch.equal(null[0], pipe.null_embedding) and null[1:].abs().sum() == 0
    assert null_mask.tolist() == [True] + [False] * 5


def test_keyframe_guidance_runs_cond_and_null_and_combines(pipe, monkeypatch):
    seen = []
    forward = pipe.keyframe_unet.forward

    def spy(x, t, context, mask, *args):
        seen.append((x.shape[0], context.clone(), mask.clone()))
        return forward(x, t, context, mask, *args)

    monkeypatch.setattr(pipe.keyframe_unet, "forward", spy)
    contexts = pipe.encode_prompt(["a red ball"])
    weight = 3.0
    out = pipe.generate_keyframes(contexts, num_keyframes=2, latent_size=(8, 8), num_inference_steps=1,
                                  guidance_scale=weight, generator=seeded(0))
    batch, context, mask = seen[0]
    assert batch == 2 and torch.equal(context[1, 0], pipe.null_embedding) and mask[1].sum() == 1
    # one step from x_T: recompute the guided prediction by hand and compare the resulting sample
    noise = torch.randn((1, 4, 2, 8, 8), generator=seeded(0)[0])
    with torch.no_grad():
        cond = forward(noise, torch.zeros(1, dtype=torch.long), context[:1], mask[:1])
        uncond = forward(noise, torch.zeros(1, dtype=torch.long), context[1:], mask[1:])
    eps = (weight + 1) * cond - weight * uncond
    from fusionframes.diffusion import Schedule, dynamic_threshold, predicted_x0
    abar = Schedule.cosine(1).alphas_cumprod[0]
    x0 = dynamic_threshold(predicted_x0(eps, noise, abar.sqrt(), (1 - abar).sqrt(), "epsilon"), 0.98)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)  # one step: the sample is the (guided) x̂₀


def test_interpolation_context_guidance_zeroes_the_keyframes(pipe, monkeypatch):
    seen = []
    forward = pipe.interpolation_unet.forward

    def spy(x, t, keyframes, skip, *args, **kwargs):
        seen.append((keyframes.clone(), skip))
        return forward(x, t, keyframes, skip, *args, **kwargs)

    monkeypatch.setattr(pipe.interpolation_unet, "forward", spy)
    latents = torch.randn(1, 4, 3, 8, 8)
    out = pipe.interpolate(latents, skip_frames=3, num_inference_steps=2, guidance_scale=0.25, generator=seeded(0))
    keyframes, skip = seen[0]
    assert skip == 3 and torch.equal(keyframes[0], latents[0]) and keyframes[1].abs().sum() == 0
    assert out.shape == (1, 4, 9, 8, 8) and torch.equal(out[:, :, ::4], latents)
    seen.clear()
    pipe.interpolate(latents, 1, 2, guidance_scale=0.0, generator=seeded(0))
    assert seen[0][0].shape[0] == 1  # no guidance: one conditional pass


def test_callback_sees_every_step_of_every_stage(pipe):
    calls = []
    pipe("a red ball", fps="high", generator=seeded(0), output_type="latent",
         callback_on_step_end=lambda stage, step, t, x: calls.append((stage, step)))
    stages = [stage for stage, _ in calls]
    assert stages == ["keyframes"] * 3 + ["interpolation s=3"] * 2 + ["interpolation s=1"] * 2


def test_diffusers_schedulers_swap_in(pipe):
    default = pipe("a red ball", fps="medium", output_type="pt", generator=seeded(0)).frames
    pipe.keyframe_scheduler = DPMSolverMultistepScheduler.from_config(scheduler_config("epsilon"))
    pipe.interpolation_scheduler = DDIMScheduler.from_config(scheduler_config("v_prediction"))
    swapped = pipe("a red ball", fps="medium", output_type="pt", generator=seeded(0)).frames
    assert swapped.shape == default.shape and torch.isfinite(swapped).all() and not torch.allclose(swapped, default)
    pipe.keyframe_scheduler = DDIMScheduler.from_config(scheduler_config("v_prediction"))
    with pytest.raises(FusionFramesError, match="keyframes scheduler predicts 'v_prediction'; this model needs "
                                                "'epsilon'"):
        pipe("a red ball", generator=seeded(0))


@pytest.mark.parametrize("name", ["ddim", "dpm++", "euler", "unipc"])
def test_named_samplers_keep_each_stage_parameterisation(pipe, name):
    pipe.use_sampler(name)
    assert pipe.keyframe_scheduler.config.prediction_type == "epsilon"
    assert pipe.interpolation_scheduler.config.prediction_type == "v_prediction"
    frames = pipe("a red ball", fps="medium", output_type="pt", generator=seeded(0)).frames
    assert frames.shape[1] == 9 and torch.isfinite(frames).all()
    pipe.use_sampler("kv1")
    assert pipe.keyframe_scheduler is None and pipe.interpolation_scheduler is None
    with pytest.raises(FusionFramesError, match="unknown sampler 'plms'"):
        pipe.use_sampler("plms")


def test_threshold_range_reaches_the_sampler(pipe):
    default = pipe("a red ball", output_type="latent", generator=seeded(0)).frames
    pipe.defaults["threshold_range"] = 1e6  # nothing is ever thresholded
    wide = pipe("a red ball", output_type="latent", generator=seeded(0)).frames
    assert not torch.allclose(default, wide)


def test_the_sampler_is_saved_with_the_pipeline(pipe, tmp_path):
    pipe.use_sampler("unipc").save_pretrained(tmp_path / "a")
    loaded = FusionFramesPipeline.from_pretrained(tmp_path / "a")
    assert loaded.sampler == "unipc" and type(loaded.keyframe_scheduler).__name__ == "UniPCMultistepScheduler"
    pipe.keyframe_scheduler = DDIMScheduler.from_config(scheduler_config("epsilon"))  # a hand-made pair
    assert pipe.sampler == "custom"
    with pytest.warns(UserWarning, match="custom schedulers are not saved"):
        pipe.save_pretrained(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "pipeline.json").read_text())["sampler"] == "kv1"


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    loaded = FusionFramesPipeline.from_pretrained(tmp_path / "model")
    loaded.progress = False
    assert json.loads((tmp_path / "model" / "pipeline.json").read_text())["text_encoder"] == PACKAGED_TEXT_ENCODER
    a = pipe("a red ball", fps="medium", output_type="pt", generator=seeded(3)).frames
    b = loaded("a red ball", fps="medium", output_type="pt", generator=seeded(3)).frames
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    shutil.rmtree(tmp_path / "model" / "movq")
    with pytest.raises(FusionFramesError, match=r"incomplete; missing: movq/config.json"):
        FusionFramesPipeline.from_pretrained(tmp_path / "model")
    with pytest.raises(FusionFramesError, match="model folder not found"):
        FusionFramesPipeline.from_pretrained(tmp_path / "nowhere")


def test_the_masked_baseline_runs_as_the_interpolation_model_and_round_trips(pipe, tmp_path):
    from fusionframes.models import Kandinsky3UNet, MaskedInterpolationUNet
    from tests.conftest import UNET, randomize

    pipe.interpolation_unet = randomize(MaskedInterpolationUNet.from_t2i(Kandinsky3UNet(**UNET)), seed=5).eval()
    video = pipe("a red ball", fps="medium", output_type="latent", generator=seeded(0)).frames
    assert video.shape[2] == 4 * 3 - 3 and torch.isfinite(video).all()
    pipe.save_pretrained(tmp_path / "masked")
    loaded = FusionFramesPipeline.from_pretrained(tmp_path / "masked")
    assert isinstance(loaded.interpolation_unet, MaskedInterpolationUNet)
    loaded.progress = False
    again = loaded("a red ball", fps="medium", output_type="latent", generator=seeded(0)).frames
    torch.testing.assert_close(again, video, atol=1e-5, rtol=1e-5)
    config = tmp_path / "masked" / "interpolation_unet" / "config.json"
    config.write_text(config.read_text().replace("MaskedInterpolationUNet", "KeyframeUNet"))
    with pytest.raises(FusionFramesError, match="holds a KeyframeUNet; an interpolation model is one of"):
        FusionFramesPipeline.from_pretrained(tmp_path / "masked")


def test_a_t5_text_encoder_loads_its_encoder_half(tmp_path, text_encoder):
    from transformers import T5Config, T5EncoderModel

    # Flan-UL2's family at toy size; the MiniLM tokenizer stands in for T5's (same code path, offline).
    folder = tmp_path / "t5"
    T5EncoderModel(T5Config(vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)) \
        .save_pretrained(folder)
    text_encoder[1].save_pretrained(folder)
    encoder, tokenizer = load_text_encoder(str(folder))
    assert type(encoder).__name__ == "T5EncoderModel"
    states = encoder(**tokenizer(["a red ball"], return_tensors="pt")).last_hidden_state
    assert states.shape[-1] == 32
    with pytest.raises(FusionFramesError, match="text encoder folder not found"):
        load_text_encoder(str(tmp_path / "missing"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt="   "), "the prompt is empty"),
    (dict(prompt=["a red ball", ""]), "the prompt is empty"),
    (dict(prompt="a", height=18), "height 18 must be a positive multiple of 4; nearest valid sizes: 16 or 20"),
    (dict(prompt="a", width=2), "width 2 must be a positive multiple of 4; nearest valid size: 4"),
    (dict(prompt="a", num_keyframes=1, fps="medium"), "needs at least 2, got 1"),
    (dict(prompt="a", fps="ultra"), "unknown fps 'ultra'"),
    (dict(prompt="a", output_type="gif"), "unknown output_type 'gif'"),
    (dict(prompt=["a", "b"], generator=seeded(1)), "1 generators for 2 videos"),
    (dict(prompt=["a", "b"], negative_prompt=["x"]), "1 negative prompts for 2 prompts"),
])
def test_bad_input_is_a_clear_error(pipe, kwargs, message):
    with pytest.raises(FusionFramesError, match=message.replace("(", r"\(")):
        pipe(**kwargs)


def test_long_prompt_is_truncated_with_a_warning(pipe):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe(" ".join(["ball"] * 40), generator=seeded(0), output_type="latent")
    assert any("truncated to the text encoder's limit of 16" in str(w.message) for w in caught)


def test_non_finite_latents_stop_with_the_stage_named(pipe, monkeypatch):
    monkeypatch.setattr(pipe.interpolation_unet, "forward", lambda x, *a, **k: x * float("nan"))
    with pytest.raises(FusionFramesError, match="interpolation s=3: latents became non-finite"):
        pipe("a red ball", fps="medium", generator=seeded(0))


def test_negative_prompt_changes_the_video(pipe):
    a = pipe("a red ball", output_type="latent", generator=seeded(0)).frames
    b = pipe("a red ball", negative_prompt="a blurry green square", output_type="latent", generator=seeded(0)).frames
    assert not torch.allclose(a, b)


def test_model_cpu_offload_gives_the_same_video(pipe):
    a = pipe("a red ball", output_type="pt", generator=seeded(0)).frames
    pipe.enable_model_cpu_offload("cpu")
    b = pipe("a red ball", output_type="pt", generator=seeded(0)).frames
    assert torch.equal(a, b)


def test_generate_cli_with_a_model_folder(pipe, tmp_path, capsys):
    pipe.save_pretrained(tmp_path / "model")
    out = tmp_path / "v.mp4"
    assert main(["generate", "a red ball", "--model", str(tmp_path / "model"), "-o", str(out), "--seed", "4",
                 "--fps", "medium", "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 9 and summary["fps"] == 8 and summary["seed"] == 4
    direct = pipe("a red ball", fps="medium", output_type="np", generator=seeded(4)).frames[0]
    from fusionframes.video_io import read_video
    decoded = read_video(out).astype(np.float32) / 255
    assert decoded.shape == direct.shape and np.abs(decoded - direct).mean() < 0.05  # H.264 is lossy


@pytest.mark.parametrize("args, message", [
    (["--dtype", "float8"], "unknown dtype 'float8'"),
    (["--device", "tpu:banana"], "unknown device 'tpu:banana'"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "nope"], "device"),
    (["-o", "/nonexistent-folder/v.mp4"], "the folder /nonexistent-folder does not exist"),
    (["-o", "video.avi"], "-o must name an .mp4 file"),
    (["--sampler", "heun9"], "unknown sampler 'heun9'; choose kv1, ddim, dpm++, euler, unipc"),
    (["--guidance", "nan"], "--guidance must be a finite number, got nan"),
    (["--decode-dtype", "float8"], "unknown --decode-dtype 'float8'"),
])
def test_generate_cli_bad_input_exits_2(pipe, tmp_path, capsys, args, message):
    pipe.save_pretrained(tmp_path / "model")
    argv = ["generate", "a red ball", "--model", str(tmp_path / "model"), "-o", str(tmp_path / "v.mp4"), "--quiet"]
    assert main(argv + args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "v.mp4").exists()


def test_generate_cli_missing_and_incomplete_model(tmp_path, capsys):
    assert main(["generate", "a", "--model", str(tmp_path / "none"), "-o", str(tmp_path / "v.mp4")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["generate", "a", "--model", str(tmp_path / "empty"), "-o", str(tmp_path / "v.mp4")]) == 2
    assert "missing: keyframe_unet/config.json" in capsys.readouterr().err


def test_a_folder_converted_from_official_checkpoints_loads_and_runs(tmp_path, text_encoder):
    """Official .pt layouts (tiny) → convert-official per component → pipeline folder + a local T5 encoder."""
    from transformers import T5Config, T5EncoderModel

    from fusionframes.convert.official import convert_official, ours_to_official

    t5 = tmp_path / "flan"
    T5EncoderModel(T5Config(vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)) \
        .save_pretrained(t5)
    text_encoder[1].save_pretrained(t5)
    official_unet = {k: v for k, v in UNET.items()}
    t2i = randomize(Kandinsky3UNet(**UNET), seed=1)
    keyframes = randomize(KeyframeUNet.from_t2i(t2i), seed=2)
    interpolation = randomize(InterpolationUNet.from_t2i(t2i), seed=3)
    movq = MoVQ(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16)
    files = {
        "keyframe-unet": {"unet": {ours_to_official(k): v for k, v in keyframes.state_dict().items()},
                          "null_embedding": torch.randn(64),
                          "projections": {"t5.0.weight": torch.randn(64, 32) * 0.1, "t5.1.weight": torch.ones(64),
                                          "t5.1.bias": torch.zeros(64)}},
        "interpolation-unet": {"unet": {ours_to_official(k): v for k, v in interpolation.state_dict().items()
                                        if k != "null_embedding"},
                               "null_embedding": torch.randn(64)},
        "movq": movq.state_dict(),
    }
    configs = {"keyframe-unet": {**official_unet, "num_frames": 15},
               "interpolation-unet": {**official_unet, "num_channels": 20, "out_channels": 12, "interpolation": True},
               "movq": dict(double_z=False, z_channels=4, resolution=16, in_channels=3, out_ch=3, ch=32,
                            ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], dropout=0.0)}
    folder = tmp_path / "kv1"
    for component, checkpoint in files.items():
        torch.save(checkpoint, tmp_path / f"{component}.pt")
        convert_official(component, tmp_path / f"{component}.pt", folder / component.replace("-", "_"),
                         configs[component])
    pipe = FusionFramesPipeline.from_pretrained(folder, text_encoder=str(t5))
    pipe.progress = False
    assert pipe.defaults["num_keyframes"] == 15 and pipe.defaults["height"] == 512  # KV 1.0 defaults
    out = pipe("a red ball", num_keyframes=2, height=16, width=16, fps="medium", num_inference_steps=2,
               interpolation_steps=2, output_type="np", generator=seeded(0))
    assert out.frames.shape == (1, 5, 16, 16, 3) and np.isfinite(out.frames).all()
    assert torch.equal(pipe.null_embedding, files["keyframe-unet"]["null_embedding"])


def test_bfloat16_unets_with_float32_decoding(pipe):
    full = pipe("a red ball", fps="medium", output_type="pt", generator=seeded(0)).frames
    pipe.to(dtype=torch.bfloat16)
    assert pipe.keyframe_unet.dtype == torch.bfloat16 and pipe.movq.dtype == torch.float32
    half = pipe("a red ball", fps="medium", output_type="pt", generator=seeded(0)).frames
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert (half - full).abs().mean() < 0.1  # same video up to bf16 rounding


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_inference_steps=0), "num_inference_steps must be an integer from 1 to 1000, got 0"),
    (dict(num_inference_steps=-3), "from 1 to 1000, got -3"),
    (dict(interpolation_steps=1001, fps="medium"), "interpolation_steps must be an integer from 1 to 1000"),
    (dict(guidance_scale=-1.0), "guidance_scale must be ≥ 0"),
    (dict(height=0), "height 0 must be a positive multiple of 4"),
    (dict(num_videos_per_prompt=0), "num_videos_per_prompt must be ≥ 1"),
])
def test_numbers_out_of_range_are_errors_not_defaults(pipe, kwargs, message):
    with pytest.raises(FusionFramesError, match=message):
        pipe("a red ball", **kwargs)


def test_text_encoder_paths_resolve_against_the_right_folder(pipe, tmp_path, text_encoder, monkeypatch):
    encoder_dir = tmp_path / "encoders" / "minilm"
    text_encoder[0].save_pretrained(encoder_dir)
    text_encoder[1].save_pretrained(encoder_dir)
    pipe.save_pretrained(tmp_path / "model")
    monkeypatch.chdir(tmp_path / "encoders")
    loaded = FusionFramesPipeline.from_pretrained(tmp_path / "model", text_encoder="minilm")  # the caller's cwd
    assert loaded.text_encoder_source == str(encoder_dir)
    loaded.save_pretrained(tmp_path / "copy")
    assert json.loads((tmp_path / "copy" / "pipeline.json").read_text())["text_encoder"] == str(encoder_dir)
    settings = json.loads((tmp_path / "model" / "pipeline.json").read_text())
    shutil.copytree(encoder_dir, tmp_path / "model" / "enc")
    (tmp_path / "model" / "pipeline.json").write_text(json.dumps({**settings, "text_encoder": "enc"}))
    reloaded = FusionFramesPipeline.from_pretrained(tmp_path / "model")
    assert reloaded.text_encoder_source == str(tmp_path / "model" / "enc")
    (tmp_path / "model" / "pipeline.json").write_text("{not json")
    with pytest.raises(FusionFramesError, match="pipeline.json is not valid JSON"):
        FusionFramesPipeline.from_pretrained(tmp_path / "model")


def test_cli_outputs_metadata_and_permissions(pipe, tmp_path, capsys):
    import os
    import stat

    from fusionframes.video_io import read_metadata
    pipe.save_pretrained(tmp_path / "model")
    out = tmp_path / "v.mp4"
    assert main(["generate", "a red ball", "--model", str(tmp_path / "model"), "-o", str(out), "--seed", "1",
                 "--guidance", "0", "--quiet", "--gif"]) == 0
    assert json.loads(read_metadata(out)["comment"])["guidance_scale"] == 0
    umask = os.umask(0)
    os.umask(umask)
    for path in (out, out.with_suffix(".gif")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    (tmp_path / "file").write_text("x")
    for args, message in ((["--frames-dir", str(tmp_path / "file")], "must be a new or empty folder"),
                          (["--frames-dir", str(tmp_path / "no" / "frames")], "(of --frames-dir) does not exist"),
                          (["--seed", str(2**64)], "--seed must be between 0 and 2**63"),
                          (["--fps", "ultra"], "unknown fps 'ultra'")):
        assert main(["generate", "a", "--model", str(tmp_path / "model"), "-o", str(tmp_path / "w.mp4")] + args) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "w.mp4").exists()


def test_interpolation_in_windows_of_groups(pipe):
    """Bounded memory: groups in overlapping windows; exact when a window holds them all, close otherwise."""
    latents = torch.randn(1, 4, 9, 8, 8, generator=torch.Generator().manual_seed(0))
    whole = pipe.interpolate(latents, 3, 2, 0.25, generator=seeded(1))
    pipe.defaults["interpolation_chunk_groups"] = 8
    assert torch.equal(pipe.interpolate(latents, 3, 2, 0.25, generator=seeded(1)), whole)
    pipe.defaults.update(interpolation_chunk_groups=4, interpolation_chunk_overlap=2)
    windowed = pipe.interpolate(latents, 3, 2, 0.25, generator=seeded(1))
    assert windowed.shape == whole.shape and torch.equal(windowed[:, :, ::4], whole[:, :, ::4])
    assert (windowed - whole).abs().max() < 0.5 * whole.abs().max()


def saved_with(pipe, folder, name, value):
    """``pipe`` with the setting ``name`` = ``value`` (which a diffusers sampler's scheduler takes too), saved to
    ``folder`` and loaded back."""
    pipe.defaults[name] = value
    pipe.use_sampler("ddim")
    scheduler = pipe.keyframe_scheduler if name.startswith("keyframe") else pipe.interpolation_scheduler
    assert scheduler.config.prediction_type == value
    pipe.use_sampler("kv1").save_pretrained(folder)
    loaded = FusionFramesPipeline.from_pretrained(folder)
    assert loaded.defaults[name] == value
    return loaded


def refused_on_loading(folder, name, value, message):
    settings = json.loads((folder / "pipeline.json").read_text())
    (folder / "pipeline.json").write_text(json.dumps({**settings, name: value}))
    with pytest.raises(FusionFramesError, match=message):
        FusionFramesPipeline.from_pretrained(folder)


def test_the_keyframe_model_is_read_as_pipeline_json_says(pipe, tmp_path):
    """``keyframe_prediction_type`` decides how the keyframe U-Net's output is read, by every sampler, and is
    saved with the pipeline; an unknown value is refused on loading."""
    eps = pipe("a red ball", output_type="latent", generator=seeded(0)).frames
    loaded = saved_with(pipe, tmp_path / "v", "keyframe_prediction_type", "v_prediction")
    v = loaded("a red ball", output_type="latent", generator=seeded(0)).frames
    assert (v - eps).abs().max() > 1e-2
    refused_on_loading(tmp_path / "v", "keyframe_prediction_type", "eps", "keyframe_prediction_type must be one "
                       "of epsilon, v_prediction, sample \\(KV 1.0: epsilon\\), got 'eps'")


def test_an_epsilon_interpolation_model_samples_with_epsilon(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "v")
    v = FusionFramesPipeline.from_pretrained(tmp_path / "v")("a red ball", fps="medium", output_type="latent",
                                                            generator=seeded(0)).frames
    loaded = saved_with(pipe, tmp_path / "eps", "interpolation_prediction_type", "epsilon")
    eps = loaded("a red ball", fps="medium", output_type="latent", generator=seeded(0)).frames
    assert torch.allclose(eps[:, :, ::4], v[:, :, ::4], atol=1e-5)  # the same keyframes,
    assert (eps[:, :, 1::4] - v[:, :, 1::4]).abs().max() > 1e-2  # other frames between them
    refused_on_loading(tmp_path / "eps", "interpolation_prediction_type", "x0",
                       "interpolation_prediction_type must be one of epsilon, v_prediction, sample")


@pytest.fixture
def motion_pipe(pipe):
    """The tiny pipeline with a keyframe U-Net that has 3 motion classes and a random motion classifier."""
    from fusionframes.models.text import MotionClassifier

    unet = randomize(KeyframeUNet.from_t2i(randomize(Kandinsky3UNet(**UNET), seed=1), motion_classes=3), seed=2)
    with torch.no_grad():
        unet.motion_embedding.weight[3].zero_()
    classifier = randomize(MotionClassifier(384, ("left", "right", "still")), seed=7, std=0.5)
    encoder, tokenizer = load_text_encoder(PACKAGED_TEXT_ENCODER)  # the shared one may have been cast and rounded
    motion = FusionFramesPipeline(encoder, tokenizer, pipe.text_projection, pipe.null_embedding,
                                  unet.eval(), pipe.interpolation_unet, pipe.movq, motion_classifier=classifier.eval(),
                                  **{k: pipe.defaults[k] for k in SETTINGS})
    motion.progress = False
    return motion


PROMPTS = ["a red ball moving left", "a blue square rising", "a star sitting still", "a green disc"]


def test_the_prompt_picks_the_motion_class_the_keyframes_are_generated_with(motion_pipe):
    motion = motion_pipe.predict_motion(PROMPTS)
    assert motion.shape == (4,) and motion.dtype == torch.long and len(set(motion.tolist())) > 1
    hidden, mask = motion_pipe._text_states(PROMPTS)
    assert torch.equal(motion, motion_pipe.motion_classifier(hidden, mask).argmax(-1))
    contexts = motion_pipe.encode_prompt(PROMPTS[:1])
    made = motion_pipe(PROMPTS[0], output_type="latent", generator=seeded(0)).frames

    def keyframes(motion):
        return motion_pipe.generate_keyframes(contexts, None, 3, (8, 8), 3, 5.0, seeded(0), motion=motion)

    torch.testing.assert_close(made, keyframes(motion[:1]))
    others = [keyframes(torch.tensor([m])) for m in range(4) if m != motion[0]]
    assert all(not torch.allclose(made, other) for other in others)
    with pytest.raises(FusionFramesError, match=r"motion needs one class per context \(1\)"):
        keyframes(torch.tensor([0, 1]))


def test_a_pipeline_with_motion_classes_round_trips_and_needs_its_classifier(motion_pipe, pipe, tmp_path):
    motion_pipe.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "keyframe_unet" / "motion_classifier" / "config.json").is_file()
    loaded = FusionFramesPipeline.from_pretrained(tmp_path / "model")
    loaded.progress = False
    a = motion_pipe(PROMPTS[:2], output_type="latent", generator=seeded(3, 4)).frames
    b = loaded(PROMPTS[:2], output_type="latent", generator=seeded(3, 4)).frames
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    shutil.rmtree(tmp_path / "model" / "keyframe_unet" / "motion_classifier")
    with pytest.raises(FusionFramesError, match=r"incomplete; missing: keyframe_unet/motion_classifier/config.json"):
        FusionFramesPipeline.from_pretrained(tmp_path / "model")
    with pytest.raises(FusionFramesError, match="has 3 motion classes and the motion classifier is missing"):
        FusionFramesPipeline(pipe.text_encoder, pipe.tokenizer, pipe.text_projection, pipe.null_embedding,
                             motion_pipe.keyframe_unet, pipe.interpolation_unet, pipe.movq)
    with pytest.raises(FusionFramesError, match="has 0 motion classes and the motion classifier has 3 labels"):
        FusionFramesPipeline(pipe.text_encoder, pipe.tokenizer, pipe.text_projection, pipe.null_embedding,
                             pipe.keyframe_unet, pipe.interpolation_unet, pipe.movq,
                             motion_classifier=motion_pipe.motion_classifier)
    assert pipe.predict_motion(PROMPTS) is None
