"""``fusionframes`` command line: a thin layer over the library; user errors become a message and exit code 2."""

import argparse
import json
import math
import sys
from pathlib import Path

from . import DEFAULT_MODEL
from .allocator import keep_freed_memory
from .errors import FusionFramesError


def _params(args):
    from .models.presets import PRESETS, preset_parameters

    if args.preset == "list":
        print("\n".join(PRESETS))
        return
    n = preset_parameters(args.preset)
    print(json.dumps({"preset": args.preset, "parameters": n}) if args.json else f"{args.preset}: {n:,} parameters")


def _load_config(text):
    if text is None:
        return None
    source = Path(text).read_text() if Path(text).is_file() else text
    try:
        config = json.loads(source)
    except json.JSONDecodeError as error:
        raise FusionFramesError(f"--config is neither a JSON object nor a JSON file: {error}") from None
    if not isinstance(config, dict):
        raise FusionFramesError("--config must be a JSON object of the official constructor kwargs")
    return config


def _convert(args):
    from .convert.official import convert_official

    out = convert_official(args.component, args.checkpoint, args.out_dir, _load_config(args.config))
    print(f"wrote {out}")


def _dtype(name: str, option: str = "dtype"):
    from .pipeline import DTYPES

    if name not in DTYPES:
        raise FusionFramesError(f"unknown {option} {name!r}; choose {', '.join(DTYPES)}")
    return DTYPES[name]


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise FusionFramesError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise FusionFramesError(f"device {name!r} is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise FusionFramesError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _check_args(args):
    """Every option checked before anything heavy loads."""
    from .pipeline import FPS, SAMPLERS

    out = Path(args.output)
    if out.suffix.lower() != ".mp4":
        raise FusionFramesError(f"-o must name an .mp4 file, got {out}")
    if not out.parent.is_dir():
        raise FusionFramesError(f"the folder {out.parent} does not exist; create it or choose another output path")
    if args.frames_dir:
        frames = Path(args.frames_dir)
        if frames.exists() and (not frames.is_dir() or any(frames.iterdir())):
            raise FusionFramesError(f"--frames-dir {frames} must be a new or empty folder")
        if not frames.parent.is_dir():
            raise FusionFramesError(f"the folder {frames.parent} (of --frames-dir) does not exist")
    if args.fps not in FPS:
        raise FusionFramesError(f"unknown fps {args.fps!r}; choose low, medium or high")
    dtype = _dtype(args.dtype)
    if args.sampler is not None and args.sampler not in SAMPLERS:
        raise FusionFramesError(f"unknown sampler {args.sampler!r}; choose {', '.join(SAMPLERS)}")
    if args.guidance is not None and not math.isfinite(args.guidance):
        raise FusionFramesError(f"--guidance must be a finite number, got {args.guidance}")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise FusionFramesError(f"--seed must be between 0 and 2**63 − 1, got {args.seed}")
    return _device(args.device), dtype


def _render(pipe, args, device):
    """Generate with ``pipe`` and write the MP4 (plus GIF / PNG frames); returns the JSON summary."""
    import random

    import numpy as np
    import torch

    from .video_io import write_frames, write_gif, write_video

    if args.sampler is not None:
        pipe.use_sampler(args.sampler)
    pipe.progress = not args.quiet
    seed = random.randrange(2**31) if args.seed is None else args.seed
    settings = dict(num_keyframes=args.keyframes, height=args.height, width=args.width, fps=args.fps,
                    num_inference_steps=args.steps, interpolation_steps=args.interpolation_steps,
                    guidance_scale=args.guidance, negative_prompt=args.negative)
    output = pipe(args.prompt, generator=torch.Generator(device).manual_seed(seed), output_type="np",
                  **{k: v for k, v in settings.items() if v is not None})
    frames = (output.frames[0] * 255).round().astype(np.uint8)
    resolved = {k: v for k, v in pipe.defaults.items() if k in settings}
    resolved.update({k: v for k, v in settings.items() if v is not None})
    metadata = {"comment": json.dumps({"prompt": args.prompt, "seed": seed, **resolved,
                                       "sampler": pipe.sampler, "generator": "fusionframes"}),
                "title": args.prompt}
    path = write_video(frames, args.output, fps=output.fps, metadata=metadata, create_folder=False)
    summary = {"path": str(path), "frames": len(frames), "fps": output.fps, "seed": seed,
               "seconds": output.timings}
    if args.gif:
        summary["gif"] = str(write_gif(frames, path.with_suffix(".gif"), fps=output.fps))
    if args.frames_dir:
        summary["frames_dir"] = str(write_frames(frames, args.frames_dir))
    return summary


def _report(summary, args):
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['path']} ({summary['frames']} frames at {summary['fps']} fps, seed {summary['seed']})")


def _load_pipeline(model, device, dtype=None, text_encoder=None):
    from . import load_default_pipeline
    from .pipeline import FusionFramesPipeline

    if model is None:
        return load_default_pipeline(dtype=dtype, device=device, text_encoder=text_encoder)
    return FusionFramesPipeline.from_pretrained(model, text_encoder=text_encoder, dtype=dtype, device=device)


def _generate(args):
    device, dtype = _check_args(args)
    decode_dtype = _dtype(args.decode_dtype, "--decode-dtype")
    pipe = _load_pipeline(args.model, device, dtype, args.text_encoder)
    pipe.decode_dtype = decode_dtype
    _report(_render(pipe.to(device), args, device), args)


def _serve(args):
    from .serve import Limits, serve

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise FusionFramesError("fusionframes serve needs Gradio: pip install 'fusionframes[web]'") from None
    dtype = _dtype(args.dtype)
    if not 0 < args.port < 65536:
        raise FusionFramesError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_queue < 0:
        raise FusionFramesError(f"--max-queue must be ≥ 0, got {args.max_queue}")
    pipe = _load_pipeline(args.model, _device(args.device), dtype)
    pipe.progress = False
    print(f"starting on http://{args.host}:{args.port} (Ctrl+C stops)", flush=True)
    try:
        serve(pipe, args.host, args.port, Limits(max_queue=args.max_queue))
    except OSError as error:  # Gradio's "Cannot find empty port" and bind errors
        raise FusionFramesError(f"cannot serve on {args.host}:{args.port} ({error}); choose another --port or "
                                f"--host") from None


def _train(args):
    from .training import load_config, train

    config = load_config(args.config)
    if config.stage != args.stage:
        raise FusionFramesError(f"{args.config} configures stage {config.stage!r}, not {args.stage!r}")
    result = train(config, resume=args.resume, progress=not args.quiet)
    if result.pop("main_process"):
        print(json.dumps(result) if args.json
              else f"{result['status']} at step {result['step']}; outputs: {result['output']}")
    if result["status"] != "finished":
        raise SystemExit(130)


def _train_recipe(args):
    from .pipeline import KV1_DEFAULTS, SAMPLERS
    from .training.recipe import assemble_pipeline, check_pipeline_output, implied_settings, run_recipe

    try:
        settings = json.loads(args.settings)
    except json.JSONDecodeError as error:
        raise FusionFramesError(f"--settings is not a JSON object: {error}") from None
    if not isinstance(settings, dict):
        raise FusionFramesError("--settings must be a JSON object of pipeline defaults")
    # Everything is checked here, not hours later when the trained stages are assembled.
    unknown = set(settings) - set(KV1_DEFAULTS)
    if unknown:
        raise FusionFramesError(f"unknown pipeline settings {sorted(unknown)}; known: {', '.join(KV1_DEFAULTS)}")
    if settings.get("sampler", "kv1") not in SAMPLERS:
        raise FusionFramesError(f"unknown sampler {settings['sampler']!r} in --settings; choose {', '.join(SAMPLERS)}")
    if args.weights_dtype is not None:
        _dtype(args.weights_dtype, "--weights-dtype")
    for name, value in implied_settings(args.recipe).items():
        if settings.setdefault(name, value) != value:
            raise FusionFramesError(f"--settings {name}={settings[name]!r} contradicts the recipe, whose stage "
                                    f"trains {value!r}")
    check_pipeline_output(args.output)
    card = Path(args.recipe) / "MODEL_CARD.md"
    outputs = run_recipe(args.recipe)
    movq = outputs.get("video-decoder", outputs.get("movq"))
    path = assemble_pipeline(args.output, outputs["keyframes"], outputs["interpolation"], Path(movq) / "movq",
                             weights_dtype=args.weights_dtype, model_card=card if card.is_file() else None,
                             **settings)
    print(f"wrote {path}")


def _skips(text: str) -> list:
    try:
        if "-" in text:
            low, high = (int(part) for part in text.split("-"))  # exactly two parts, or ValueError
            skips = list(range(low, min(high, 1000) + 1)) if high <= 1000 else []
        else:
            skips = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        skips = []
    if not skips or min(skips) < 1:
        raise FusionFramesError(f"--skip takes skip-frames ≥ 1 as a list (1,3,6) or a range (1-12), got {text!r}")
    return skips


def _eval_interpolation(args):
    from tqdm import tqdm

    from .evaluation.interpolation import format_table, interpolation_quality, plot_skip_curve, procedural_clips
    from .video_io import write_atomic

    skips = _skips(args.skip)
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise FusionFramesError(f"--out {out} is a file; name a folder")
    if args.clips < 1 or args.groups < 1:
        raise FusionFramesError(f"--clips and --groups must be ≥ 1, got {args.clips} and {args.groups}")
    if args.interpolation_steps is not None and not 1 <= args.interpolation_steps <= 1000:
        raise FusionFramesError(f"--interpolation-steps must be from 1 to 1000, got {args.interpolation_steps}")
    dtype = _dtype(args.dtype)
    pipe = _load_pipeline(args.model, _device(args.device), dtype)
    pipe.progress = False
    limit = pipe.interpolation_unet.skip_embeddings.num_embeddings - 1
    if max(skips) > limit:
        raise FusionFramesError(f"this interpolation model knows skip-frames up to {limit}, got {max(skips)}")
    steps = args.interpolation_steps or pipe.defaults["interpolation_steps"]
    rows = {}
    with tqdm(total=args.clips * len(skips), unit="clip", disable=args.quiet) as bar:
        for skip in skips:
            clips = procedural_clips(args.clips, skip, args.groups, pipe.defaults["height"], seed=args.seed + skip)
            rows[skip] = interpolation_quality(pipe, clips, skip, steps, seed=args.seed, progress=bar.update)
    report = {"skip_frames": rows, "settings": dict(model=str(args.model or "default"), clips=args.clips,
                                                     groups=args.groups, interpolation_steps=steps, seed=args.seed,
                                                     size=pipe.defaults["height"], data="procedural held-out")}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "interpolation.json", json.dumps(report, indent=1))
        _write_atomic(out / "interpolation.md", f"Settings: {json.dumps(report['settings'])}\n\n" + format_table(rows))
        write_atomic(out / "interpolation_psnr.png", lambda tmp: plot_skip_curve(rows, tmp))
    print(json.dumps(report) if args.json else format_table(rows))


def _eval_protocol(args):
    """UCF-101 (FVD + IS) or MSR-VTT (CLIPSIM): every file checked before the model loads; resumable in --out."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from .evaluation import protocols

    if not args.out:
        raise FusionFramesError(f"eval {args.metric} needs --out DIR: its measurements are stored there batch by "
                                f"batch, so a rerun resumes an interrupted run")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise FusionFramesError(f"--out {args.out} is a file; name a folder for the measurements")
    dtype = _dtype(args.dtype)
    if args.batch_size < 1 or (args.samples is not None and args.samples < 1):
        raise FusionFramesError(f"--batch-size and --samples must be ≥ 1, got {args.batch_size} and {args.samples}")
    device = _device(args.device)
    if args.metric == "ucf101":
        from .evaluation.c3d import InceptionScoreC3D
        from .evaluation.i3d import FVD

        for option in ("data", "i3d", "c3d", "c3d_mean"):
            if not getattr(args, option):
                raise FusionFramesError(f"eval ucf101 needs --{option.replace('_', '-')} (UCF-101 folder, "
                                        f"i3d_torchscript.pt, conv3d_deepnetA_ucf.npz and mean2.npz)")
        protocols.ucf101_videos(args.data)
        measures = dict(fvd=FVD(args.i3d, device=device), inception=InceptionScoreC3D(args.c3d, args.c3d_mean,
                                                                                      device=device))
    else:
        from .evaluation.clipsim import CLIPSim

        if not args.captions or not args.clip:
            raise FusionFramesError("eval msrvtt needs --captions (test_videodatainfo.json or one caption per line) "
                                    "and --clip (a local CLIP model folder)")
        captions = protocols.msrvtt_captions(args.captions)
        clipsim = CLIPSim(args.clip, device=device)
    pipe = _load_pipeline(args.model, device, dtype)
    pipe.progress = False
    settings = {k: v for k, v in dict(num_inference_steps=args.steps,
                                      interpolation_steps=args.interpolation_steps).items() if v is not None}

    def generate(prompts, seeds):
        out = pipe(prompts, fps=args.fps, output_type="np", **settings,
                   generator=[torch.Generator(device).manual_seed(s) for s in seeds])
        return list((out.frames * 255).round().astype(np.uint8))

    identity = dict(model=str(Path(args.model).resolve()) if args.model else "default", fps=args.fps,
                    dtype=args.dtype, sampler=pipe.sampler,
                    **{k: settings.get(k, pipe.defaults[k]) for k in ("num_inference_steps", "interpolation_steps")})
    common = dict(out=args.out, identity=identity, batch_size=args.batch_size, seed=args.seed)
    if args.metric == "ucf101":
        samples = args.samples or 2048
        with tqdm(total=2 * samples, unit="clip", disable=args.quiet) as bar:
            report = protocols.ucf101(generate, args.data, samples=samples, progress=bar.update, **measures,
                                      **common)
    else:
        samples = min(args.samples or len(captions), len(captions))
        with tqdm(total=samples, unit="video", disable=args.quiet) as bar:
            report = protocols.msrvtt(generate, captions, clipsim, samples=samples, progress=bar.update, **common)
    report["settings"] = identity
    _write_atomic(Path(args.out, f"{args.metric}.json"), json.dumps(report, indent=1))
    print(json.dumps(report, indent=None if args.json else 1))


def _eval_t2i(args):
    import torch
    from einops import rearrange

    from .evaluation.t2i import evaluate_t2i
    from .training.tasks import T2ITask, generate_from_captions

    if not args.model:
        raise FusionFramesError("eval t2i needs --model: a t2i stage's output_dir (config.json and final/)")
    if args.markdown:
        raise FusionFramesError("eval t2i writes no markdown report; use --json")
    steps = 30 if args.steps is None else args.steps
    if not 1 <= steps <= 1000:
        raise FusionFramesError(f"--steps must be from 1 to 1000, got {steps}")
    if args.seeds < 1 or not args.guidance >= 0 or (args.threshold_range is not None and not args.threshold_range > 0):
        raise FusionFramesError("--seeds must be ≥ 1, --guidance ≥ 0 and --threshold-range > 0")
    task = T2ITask.from_run(args.model)
    side = task.config.data.size // task.movq.model.downsample_factor
    with torch.no_grad():
        def generate(prompts, seed):
            shape = (len(prompts), task.unet.config.num_channels, side, side)
            latents = generate_from_captions(task, prompts, shape, torch.Generator().manual_seed(seed), steps,
                                             args.guidance, args.threshold_range)
            return rearrange(task.decode(latents[:, :, None])[0], "h (b w) c -> b h w c", b=len(prompts)).numpy()

        report = evaluate_t2i(generate, args.seeds)
    report["settings"] = dict(model=str(args.model), prediction_type=task.prediction_type, steps=steps,
                              guidance=args.guidance, seeds=args.seeds,
                              threshold_range=args.threshold_range or task.config.train.sample_threshold_range)
    if not args.json:
        report.pop("per_image")
    print(json.dumps(report, indent=None if args.json else 1))


def _eval(args):
    runs = {"alignment": _eval_alignment, "interpolation": _eval_interpolation, "t2i": _eval_t2i}
    return runs.get(args.metric, _eval_protocol)(args)


def _eval_alignment(args):
    import numpy as np
    import torch

    from .evaluation import evaluate_alignment, evaluate_renders, format_markdown, load_prompt_set
    from .evaluation.domain import DomainFVD
    from .pipeline import SAMPLERS

    if args.markdown and not Path(args.markdown).parent.is_dir():
        raise FusionFramesError(f"the folder of --markdown {args.markdown} does not exist")
    if args.batch_size < 1 or args.every < 1:
        raise FusionFramesError(f"--batch-size and --every must be ≥ 1, got {args.batch_size} and {args.every}")
    for name, value in (("--steps", args.steps), ("--interpolation-steps", args.interpolation_steps)):
        if value is not None and not 1 <= value <= 1000:
            raise FusionFramesError(f"{name} must be from 1 to 1000, got {value}")
    if args.sampler is not None and args.sampler not in SAMPLERS:
        raise FusionFramesError(f"unknown sampler {args.sampler!r}; choose {', '.join(SAMPLERS)}")
    dtype = _dtype(args.dtype)
    if not 0 <= args.seed < 2**63:
        raise FusionFramesError(f"--seed must be between 0 and 2**63 − 1, got {args.seed}")
    prompts = load_prompt_set()[::args.every]
    domain_fvd = DomainFVD(args.domain_net)  # before generating: a missing network fails at once
    if args.renders:
        report = evaluate_renders(prompts, fps=args.fps, domain_fvd=domain_fvd)
        report["settings"] = dict(renders=True, fps=args.fps, every=args.every)
    else:
        device = _device(args.device)
        pipe = _load_pipeline(args.model, device, dtype)
        if args.sampler is not None:
            pipe.use_sampler(args.sampler)
        pipe.progress = False
        settings = dict(num_inference_steps=args.steps, interpolation_steps=args.interpolation_steps)
        settings = {k: v for k, v in settings.items() if v is not None}
        # Prompts of one token length share a batch (the keyframe U-Net runs each context length separately);
        # the report lists them in the set's order again.
        order = {r["id"]: i for i, r in enumerate(prompts)}
        prompts = sorted(prompts, key=lambda r: len(pipe.tokenizer(r["prompt"])["input_ids"]))

        def generate(batch):  # a prompt, or a list of prompts when --batch-size > 1
            single = isinstance(batch, str)
            batch = [batch] if single else batch
            out = pipe(batch, fps=args.fps, output_type="np", **settings,
                       generator=[torch.Generator(device).manual_seed(args.seed) for _ in batch])
            videos = list((out.frames * 255).round().astype(np.uint8))
            return videos[0] if single else videos

        def progress(done, total, row):
            print(f"\r{done}/{total} prompts", end="" if done < total else "\n", file=sys.stderr, flush=True)

        report = evaluate_alignment(generate, prompts, fps=args.fps, batch_size=args.batch_size,
                                    progress=None if args.quiet else progress, domain_fvd=domain_fvd)
        report["per_prompt"].sort(key=lambda row: order[row["id"]])
        d = pipe.defaults
        report["settings"] = dict(model=str(args.model or "default"), fps=args.fps, seed=args.seed, every=args.every,
                                  sampler=pipe.sampler, dtype=args.dtype,
                                  num_inference_steps=settings.get("num_inference_steps", d["num_inference_steps"]),
                                  interpolation_steps=settings.get("interpolation_steps", d["interpolation_steps"]),
                                  num_keyframes=d["num_keyframes"], height=d["height"], width=d["width"])
    if args.markdown:
        Path(args.markdown).write_text(f"Settings: {json.dumps(report['settings'])}\n\n" + format_markdown(report))
    summary = {"accuracy": report["accuracy"], "domain_fvd": report["domain_fvd"], "targets": report["targets"],
               "settings": report["settings"]}
    print(json.dumps(report if args.json else summary, indent=None if args.json else 1))


def _write_atomic(path: Path, text: str) -> None:
    from .video_io import write_atomic

    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def _ablate(args):
    from .ablations import run_ablation

    for name, value in (("--steps", args.steps), ("--clips", args.clips), ("--every", args.every)):
        if value < 1:
            raise FusionFramesError(f"{name} must be ≥ 1, got {value}")
    if bool(args.vgg16) != bool(args.lpips):
        raise FusionFramesError("LPIPS needs both --vgg16 and --lpips")
    perceptual = {"vgg16": args.vgg16, "lpips": args.lpips} if args.vgg16 else None
    result = run_ablation(args.ablation, args.model or DEFAULT_MODEL, args.out, args.steps, seed=args.seed,
                          clips=args.clips, every=args.every, progress=not args.quiet, perceptual=perceptual)
    print(json.dumps(result if args.json else {k: v for k, v in result.items() if k != "rows"}, indent=1))


def _bench(args):

    if args.out and not Path(args.out).is_dir():
        raise FusionFramesError(f"--out {args.out} is not a folder")
    dtype = _dtype(args.dtype) if args.dtype else None
    if args.full_size and args.what != "utilisation":
        raise FusionFramesError("--full-size belongs to bench utilisation")
    if args.repeats < 1:
        raise FusionFramesError(f"--repeats must be ≥ 1, got {args.repeats}")
    device = _device(args.device)
    from . import bench

    if args.what == "pipeline":
        if args.model is None and not (DEFAULT_MODEL / "pipeline.json").is_file():
            _load_pipeline(None, device)  # raises the default model's own message
        result = bench.bench_pipeline(args.model or DEFAULT_MODEL, str(device), dtype, args.repeats)
        table = bench.pipeline_markdown(result)
    elif args.what == "memory":
        result = bench.bench_memory(measure_activations=args.measure)
        table = bench.memory_markdown(result)
    elif args.what == "scaling":
        if args.model is None and not (DEFAULT_MODEL / "pipeline.json").is_file():
            _load_pipeline(None, device)
        result = bench.bench_scaling(args.model or DEFAULT_MODEL, args.repeats)
        table = bench.scaling_markdown(result)
        if args.out:
            bench.plot_scaling(result, Path(args.out) / "scaling.png")
    else:
        pipe = _load_pipeline(args.model, device, dtype)
        pipe.progress = False
        if args.what == "interpolation":
            result = bench.bench_interpolation(pipe, repeats=args.repeats)
            table = bench.interpolation_markdown(result)
        else:
            result = bench.bench_utilisation(pipe, repeats=args.repeats)
            table = bench.utilisation_markdown(result)
            if args.full_size:
                full = bench.bench_utilisation_full_size(device, dtype, repeats=min(args.repeats, 2))
                result = dict(default_model=result, full_size=full)
                table += "\n" + bench.utilisation_markdown(full)
    if args.out:
        _write_atomic(Path(args.out) / f"{args.what}.json", json.dumps(result, indent=1) + "\n")
        _write_atomic(Path(args.out) / f"{args.what}.md", table)
    print(json.dumps(result) if args.json else table, end="\n" if args.json else "")


def _add_generation_options(p):
    p.add_argument("-o", "--output", default="outputs/video.mp4", help="the .mp4 to write")
    p.add_argument("--seed", type=int, help="random seed (default: a random one, reported and stored)")
    p.add_argument("--fps", default="low", help="low = keyframes (2 FPS), medium = 4T−3 (8 FPS), high = 16T−15 "
                                                "(30 FPS)")
    p.add_argument("--steps", type=int, help="keyframe sampling steps")
    p.add_argument("--interpolation-steps", type=int, help="sampling steps of each interpolation pass")
    p.add_argument("--guidance", type=float, help="KV 1.0 guidance weight w: (w+1)·cond − w·uncond")
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--keyframes", type=int, help="number of keyframes T")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--gif", action="store_true", help="also write a GIF next to the MP4")
    p.add_argument("--frames-dir", help="also write every frame as PNG into this new folder")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 for the text encoder and "
                                                      "U-Nets")
    p.add_argument("--decode-dtype", default="float32", help="precision of MoVQ decoding: bfloat16 decodes 1.2–1.4× "
                                                             "faster on CPUs with bf16 units (≥ 52 dB from float32)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    p.add_argument("--sampler", help="kv1 (KV 1.0's ancestral sampler), ddim, dpm++, euler or unipc (default: the "
                                     "model's)")
    p.add_argument("--json", action="store_true", help="print a JSON summary (path, frames, fps, seconds)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusionframes",
                                     description="FusionFrames text-to-video (Kandinsky Video 1.0)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("params", help="count a preset's parameters (built on the meta device, no memory)")
    p.add_argument("preset", help="preset name, or 'list' to list them")
    p.add_argument("--json", action="store_true", help='print {"preset": ..., "parameters": N}')
    p.set_defaults(run=_params)

    p = sub.add_parser("convert-official", help="official KV 1.0 .pt checkpoint → from_pretrained folder")
    p.add_argument("--component", required=True, help="keyframe-unet, interpolation-unet, movq or video-movq")
    p.add_argument("--config", help="official constructor kwargs as JSON (string or file); default full KV 1.0 size")
    p.add_argument("checkpoint", help="path of the official .pt file")
    p.add_argument("out_dir", help="new folder to write")
    p.set_defaults(run=_convert)

    p = sub.add_parser("serve", help="web demo (Gradio): prompt → video in the browser")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--model", help="pipeline folder (default: the embedded default model)")
    p.add_argument("--max-queue", type=int, default=4, help="requests that may wait behind the running one")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 for the U-Nets")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    p.set_defaults(run=_serve)

    p = sub.add_parser("generate", help="text → video (MP4)")
    p.add_argument("prompt")
    p.add_argument("--model", help="pipeline folder (default: the embedded default model)")
    p.add_argument("--text-encoder", help="local text-encoder folder, overriding the model's (e.g. Flan-UL2)")
    _add_generation_options(p)
    p.set_defaults(run=_generate)

    p = sub.add_parser("train", help="train one stage of the paper (runs under python, torchrun or accelerate)")
    p.add_argument("stage", help="t2i, keyframes, interpolation, masked-interpolation, movq or video-decoder")
    p.add_argument("--config", required=True, help="YAML run configuration")
    p.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoint")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_train)

    p = sub.add_parser("train-recipe", help="run a folder of stage configs in order, then assemble the pipeline")
    p.add_argument("recipe", help="folder of stage configs (and optionally MODEL_CARD.md), e.g. configs/default")
    p.add_argument("--output", required=True, help="pipeline folder to write")
    p.add_argument("--settings", default="{}", help="pipeline defaults as JSON (num_keyframes, height, …)")
    p.add_argument("--weights-dtype", help="store the weights in this precision (float16 halves the size)")
    p.set_defaults(run=_train_recipe)

    p = sub.add_parser("eval", help="measure a model: alignment (the procedural domain's held-out prompt set), "
                                     "interpolation (PSNR/SSIM of in-between frames per skip-frame), t2i (a T2I "
                                     "stage's colours, shapes and background)")
    p.add_argument("metric", choices=["alignment", "interpolation", "t2i", "ucf101", "msrvtt"])
    p.add_argument("--model", help="pipeline folder (default: the embedded default model); t2i: a t2i stage's "
                                   "output_dir")
    p.add_argument("--renders", action="store_true", help="score true renders instead (the evaluator's ceiling)")
    p.add_argument("--domain-net", help="alignment: domain FVD network weights (default: the shipped network)")
    p.add_argument("--fps", default="high", choices=["low", "medium", "high"])
    p.add_argument("--seed", type=int, default=0, help="every prompt's seed")
    p.add_argument("--steps", type=int, help="keyframe sampling steps (default: the model's)")
    p.add_argument("--interpolation-steps", type=int, help="steps of each interpolation pass")
    p.add_argument("--sampler", help="kv1, ddim, dpm++, euler or unipc (default: the model's)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts generated together")
    p.add_argument("--every", type=int, default=1, help="score every K-th prompt of the set only (a quick look)")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 for the U-Nets")
    p.add_argument("--device", default="cpu")
    p.add_argument("--markdown", help="also write the report as a markdown table here")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.add_argument("--guidance", type=float, default=5.0, help="t2i: guidance weight")
    p.add_argument("--threshold-range", type=float, help="t2i: dynamic thresholding range (default: the run's)")
    p.add_argument("--seeds", type=int, default=2, help="t2i: images per prompt (seeds 0 … N−1)")
    p.add_argument("--skip", default="1-12", help="interpolation: skip-frames, a list (1,3) or a range (1-12)")
    p.add_argument("--clips", type=int, default=16, help="interpolation: held-out clips per skip-frame")
    p.add_argument("--groups", type=int, default=2, help="interpolation: keyframe pairs per clip (4G+1 frames)")
    p.add_argument("--out", help="interpolation: write interpolation.json, .md and a PSNR plot into this folder; "
                                 "ucf101/msrvtt: the resumable measurement folder (rerun to resume)")
    p.add_argument("--samples", type=int, help="ucf101: videos per side (default 2048); msrvtt: captions (default all)")
    p.add_argument("--data", help="ucf101: the UCF-101 folder of class folders")
    p.add_argument("--i3d", help="ucf101: StyleGAN-V's i3d_torchscript.pt (or an I3D state dict)")
    p.add_argument("--c3d", help="ucf101: TGANv2's conv3d_deepnetA_ucf.npz")
    p.add_argument("--c3d-mean", help="ucf101: TGANv2's mean2.npz")
    p.add_argument("--captions", help="msrvtt: test_videodatainfo.json or a text file, one caption per line")
    p.add_argument("--clip", help="msrvtt: a local CLIP model folder (e.g. openai/clip-vit-base-patch32)")
    p.set_defaults(run=_eval)

    p = sub.add_parser("ablate", help="rerun one of the paper's comparisons on a small budget: train the variants "
                                      "on the same data, steps and seed, score them, write a table and a plot")
    p.add_argument("ablation", choices=["keyframes", "interpolation", "decoder"])
    p.add_argument("--out", required=True, help="folder for the runs and ablation.{json,md,png} (resumable)")
    p.add_argument("--model", help="pipeline folder whose weights are the parents (default: the embedded model)")
    p.add_argument("--steps", type=int, default=300, help="training steps per variant")
    p.add_argument("--clips", type=int, default=8, help="held-out clips per score (interpolation, decoder)")
    p.add_argument("--every", type=int, default=8, help="keyframes: score every K-th prompt of the alignment set")
    p.add_argument("--vgg16", help="decoder: torchvision VGG16 weights, with --lpips adds LPIPS to the scores")
    p.add_argument("--lpips", help="decoder: LPIPS v0.1 linear-layer weights (vgg.pth)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print every row, not only the summary")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_ablate)

    p = sub.add_parser("bench", help="measure: group vs masked interpolation, pipeline stages, FLOP utilisation, "
                                          "scaling (CPU), full-size memory")
    p.add_argument("what", choices=["interpolation", "pipeline", "utilisation", "scaling", "memory"])
    p.add_argument("--measure", action="store_true", help="memory: also run full-size U-Net steps (≈ 9 GB RAM each)")
    p.add_argument("--full-size", action="store_true", help="utilisation: also measure the full-size KV 1.0 keyframe "
                                                            "U-Net (random weights, bfloat16 unless --dtype; 9 GB)")
    p.add_argument("--model", help="pipeline folder (default: the embedded default model)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (the median is kept; "
                                                          "utilisation keeps the best)")
    p.add_argument("--dtype", help="float32 (default; utilisation --full-size: bfloat16), bfloat16 or float16 for "
                                   "the U-Nets")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="also write WHAT.json and WHAT.md into this folder")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except FusionFramesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def run() -> int:
    """The ``fusionframes`` command: :func:`main` in a process that keeps freed memory (a process-wide setting, so
    it belongs to the command's own process, not to callers of :func:`main`)."""
    keep_freed_memory()
    return main()


if __name__ == "__main__":
    sys.exit(run())
