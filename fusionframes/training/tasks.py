"""One small "task" per stage of the paper: an nn.Module whose forward turns a batch into the loss (§5).

The loop hands the task itself to accelerate (so DDP/FSDP wrap the whole forward) and calls
``task(batch, generator)``; ``save(folder)`` writes from_pretrained folders in the pipeline layout. Frozen helpers
(the text encoder, MoVQ for the U-Net stages) are held outside the module tree, so optimisers, DDP and
checkpoints only see what the stage owns.
"""

import dataclasses
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file, save_file
from torch import nn

from ..diffusion import Schedule, diffusion_loss, guided, sample_ancestral
from ..errors import FusionFramesError
from ..models import InterpolationUNet, Kandinsky3UNet, KeyframeUNet, MaskedInterpolationUNet, train_temporal_only
from ..models.interpolation import masked_windows
from ..data.procedural import MOTIONS
from ..models.movq import MoVQ
from ..models.text import MotionClassifier, TextProjection, null_context
from ..pipeline import load_text_encoder
from .adversarial import PatchDiscriminator, adversarial_losses
from .cache import EncoderCache, weights_digest
from .config import (INTERPOLATION_UNETS, RunConfig, check_keyframes_continuation, check_keyframes_parent,
                     encode_dtype, interpolation_parent, load_saved_config, stage_prediction_type,
                     trained_prediction_type)
from .motion import fit_motion_classifier
from .perceptual import PerceptualLoss

TRAIN_SCHEDULE_STEPS = 1000  # the U-Nets learn t ∈ [0, 1000) on the cosine schedule; sampling strides through it


def _folder(path, what: str) -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FusionFramesError(f"{what} not found: {path} has no config.json")
    return path


class Frozen:
    """A frozen model kept out of the owner's parameters, state dict and DDP; follows the device it is used on."""

    def __init__(self, model: nn.Module):
        self.model = model.requires_grad_(False).eval()

    def on(self, device) -> nn.Module:
        return self.model.to(device)


class TextConditioning(nn.Module):
    """Trainable text projection and null embedding over a frozen encoder (KV 1.0's context, §3.1)."""

    def __init__(self, encoder_source: str, context_dim: int, max_tokens: int, cache_dir=None):
        super().__init__()
        encoder, self.tokenizer = load_text_encoder(encoder_source)
        self.encoder = Frozen(encoder)
        self.max_tokens = max_tokens
        self.projection = TextProjection(encoder.config.hidden_size, context_dim)
        self.null_embedding = nn.Parameter(torch.randn(context_dim) * 0.02)
        self.cache = None
        if cache_dir:
            identity = {"encoder": encoder_source, "config": encoder.config.to_dict(), "max_tokens": max_tokens,
                        "weights": weights_digest(encoder)}
            self.cache = EncoderCache(Path(cache_dir) / "text", identity)

    def states(self, captions, batch: int = 256):
        """The frozen encoder's states (B, max_tokens, d) and mask, computed (never cached) in batches."""
        device = self.null_embedding.device
        hidden, masks = [], []
        for start in range(0, len(captions), batch):
            tokens = self.tokenizer(list(captions[start:start + batch]), max_length=self.max_tokens,
                                    padding="max_length", truncation=True, return_tensors="pt").to(device)
            with torch.no_grad():
                hidden.append(self.encoder.on(device)(**tokens).last_hidden_state)
            masks.append(tokens["attention_mask"].bool())
        return torch.cat(hidden), torch.cat(masks)

    def encode(self, captions):
        """The frozen encoder's states (B, max_tokens, d) and mask, from the cache where possible."""
        def compute(positions):
            hidden, mask = self.states([captions[i] for i in positions])
            return {"hidden": hidden, "mask": mask}

        if self.cache is None:
            return self.states(captions)
        entries = self.cache.fetch(list(captions), compute)
        device = self.null_embedding.device
        return (torch.stack([e["hidden"] for e in entries]).to(device),
                torch.stack([e["mask"] for e in entries]).to(device))

    def forward(self, captions, dropout: float, generator: torch.Generator):
        """Context (B, L, D) cut to the batch's longest caption + 1 (padding zeroed), with captions dropped to the
        null context (slot 0 = null embedding) at rate ``dropout`` — how the null embedding is learned — and which
        were dropped (B,)."""
        hidden, mask = self.encode(list(captions))
        context = self.projection(hidden) * mask[..., None]
        length = int(mask.sum(1).max()) + 1
        context, mask = context[:, :length], mask[:, :length]
        drop = torch.rand(len(captions), generator=generator) < dropout
        # Built on every step, dropped or not, so the null embedding is always in the graph (DDP requires it).
        null, null_mask = null_context(self.null_embedding, context.shape[1])
        null = null.to(context.dtype)
        context = torch.where(drop[:, None, None].to(context.device), null, context)
        mask = torch.where(drop[:, None].to(mask.device), null_mask, mask)
        return context, mask, drop

    def save(self, folder: Path):
        self.projection.save_pretrained(folder / "text_projection")
        save_file({"null_embedding": self.null_embedding.detach().float().cpu().contiguous()},
                  folder / "null_embedding.safetensors")

    def load(self, folder: Path):
        projection = TextProjection.from_pretrained(_folder(folder / "text_projection", "a text projection"))
        null = folder / "null_embedding.safetensors"
        if not null.is_file():
            raise FusionFramesError(f"{folder} has no null_embedding.safetensors")
        try:
            self.projection.load_state_dict(projection.state_dict())
            with torch.no_grad():
                self.null_embedding.copy_(load_file(null)["null_embedding"])
        except RuntimeError as error:  # a size mismatch: another text encoder or context width
            raise FusionFramesError(f"the text projection in {folder} does not fit this stage's text encoder and "
                                    f"U-Net (was it trained with another text_encoder?): {error}") from None


class Task(nn.Module):
    def __init__(self, config: RunConfig):
        super().__init__()
        self.config = config
        self.prediction_type = stage_prediction_type(config)
        self.schedule = Schedule.cosine(TRAIN_SCHEDULE_STEPS)
        self.cache = None
        if config.model.movq_path:
            movq = MoVQ.from_pretrained(_folder(config.model.movq_path, "model.movq_path (a MoVQ folder)"))
            self.movq = Frozen(movq)
            if config.data.cache_dir:
                identity = {"movq": dict(movq.config), "weights": weights_digest(movq), "stage": config.stage,
                            "data": {k: v for k, v in vars(config.data).items()
                                     if k not in ("cache_dir", "encode_dtype")}}
                if encode_dtype(config) != "float32":  # so caches made before the option existed stay valid
                    identity["encode_dtype"] = encode_dtype(config)
                self.cache = EncoderCache(Path(config.data.cache_dir) / "latents", identity)

    def latents(self, batch: dict) -> torch.Tensor:
        """MoVQ latents of the batch's frames; cached per sample (its data index) when a cache is configured."""
        frames = batch["frames"]
        dtype = getattr(torch, encode_dtype(self.config))

        def compute(positions):
            # Its own region either way: float32 must hold inside train.mixed_precision's autocast too.
            precision = (torch.autocast(frames.device.type, dtype) if dtype != torch.float32
                         else torch.autocast(frames.device.type, enabled=False))
            with torch.no_grad(), precision:
                movq = self.movq.on(frames.device)
                return {"latents": movq.encode(frames[list(positions)].to(movq.dtype)).float()}

        if self.cache is None:
            return compute(range(frames.shape[0]))["latents"]
        entries = self.cache.fetch([str(i) for i in batch["index"]], compute)
        return torch.stack([e["latents"] for e in entries]).to(frames.device)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, c, F, h, w) → uint8 frames (F, H, B·W, 3): the batch side by side, for sample videos."""
        movq = self.movq.on(latents.device)
        video = ((movq.decode(latents.to(movq.dtype)).float() + 1) * 127.5).clamp(0, 255).byte()
        return rearrange(video, "b c f h w -> f h (b w) c").cpu()

    def noised(self, x0: torch.Tensor, generator: torch.Generator):
        t = torch.randint(0, TRAIN_SCHEDULE_STEPS, (x0.shape[0],), generator=generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        return self.schedule.add_noise(x0, noise, t), noise, t

    def diffusion_loss(self, prediction, x0, noise, t):
        return diffusion_loss(prediction, x0, noise, t, self.schedule, self.prediction_type,
                              self.config.train.snr_gamma)


def generate_from_captions(task, captions, shape, generator, steps: int = 25, weight: float = 3.0,
                           threshold_range: Optional[float] = None, motion: Optional[torch.Tensor] = None):
    """Latents of ``shape`` for the captions, with KV 1.0's sampler and guidance against the null embedding (the
    task's parameterisation; ``threshold_range`` by default the config's ``train.sample_threshold_range``);
    ``motion`` (B,) the keyframe U-Net's motion classes, against none said."""
    context, mask, _ = task.text(captions, 0.0, generator)
    null, null_mask, _ = task.text(captions, 1.0, generator)
    conditional, unconditional = {"c": context, "m": mask}, {"c": null, "m": null_mask}
    if motion is not None:
        conditional["motion"] = motion
        unconditional["motion"] = torch.full_like(motion, task.unet.null_motion)
    denoise = guided(lambda x, t, c, m, **motion: task.unet(x, t, c, m, **motion), weight, conditional,
                     unconditional)
    noise = torch.randn(shape, generator=generator).to(context.device)
    return sample_ancestral(denoise, noise, Schedule.cosine(steps), task.prediction_type, generator,
                            progress=False,
                            threshold_range=threshold_range or task.config.train.sample_threshold_range)


class T2ITask(Task):
    """The Kandinsky 3.0-style text-to-image U-Net on single frames; ε-loss (or ``model.prediction_type``); caption
    dropout. With ``model.init_from`` (a t2i output folder) it fine-tunes that model, U-Net and text projection,
    possibly into another parameterisation: Stable Diffusion 2's v-model was an ε-model fine-tuned this way."""

    def __init__(self, config: RunConfig):
        super().__init__(config)
        if config.model.init_from:
            self.unet, source = load_t2i(config)
        else:
            self.unet, source = Kandinsky3UNet(**config.model.unet), None
        self.text = TextConditioning(config.model.text_encoder, self.unet.config.context_dim,
                                     config.model.max_text_tokens, config.data.cache_dir)
        if source is not None:
            self.text.load(source)

    def forward(self, batch, generator):
        x0 = self.latents({**batch, "frames": batch["frames"][:, :, 0]})
        x_t, noise, t = self.noised(x0, generator)
        context, mask, _ = self.text(batch["caption"], self.config.train.caption_dropout, generator)
        return self.diffusion_loss(self.unet(x_t, t, context, mask), x0, noise, t)

    @torch.no_grad()
    def sample(self, batch, generator):
        """The batch's captions as images (one frame each, side by side)."""
        shape = self.latents({**batch, "frames": batch["frames"][:, :, 0]}).shape
        return self.decode(generate_from_captions(self, batch["caption"], shape, generator)[:, :, None]), 1

    def save(self, folder: Path):
        self.unet.save_pretrained(folder / "unet")
        self.text.save(folder)

    @classmethod
    def from_run(cls, run_dir) -> "T2ITask":
        """A trained t2i stage from its run folder (``config.json`` and ``final/``), to sample from: the model
        it was fine-tuned from, if any, is not needed, and no data cache is touched."""
        run_dir = Path(run_dir)
        if not (run_dir / "config.json").is_file():
            raise FusionFramesError(f"{run_dir} is not a training run folder (no config.json): name a t2i stage's "
                                    f"output_dir")
        config = load_saved_config(run_dir / "config.json")
        if config.stage != "t2i":
            raise FusionFramesError(f"{run_dir} holds a {config.stage} run; name a t2i stage's output_dir")
        _folder(run_dir / "final" / "unet", f"the trained U-Net of {run_dir} (is the run finished?)")
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, cache_dir=None),
                                     model=dataclasses.replace(config.model, unet={},
                                                               init_from=str(run_dir / "final")))
        return cls(config).eval()


def load_t2i(config: RunConfig, what: str = "a t2i output folder"):
    folder = _folder(Path(config.model.init_from) / "unet", f"model.init_from ({what})")
    return Kandinsky3UNet.from_pretrained(folder), folder.parent


class KeyframesTask(Task):
    """Temporal parts on a frozen T2I model (paper: only temporal parameters train); the T2I stage's loss (ε unless
    ``model.prediction_type`` says otherwise: the frozen spatial weights predict what they were trained to); caption
    dropout. With ``model.motion_conditioning`` a motion classifier is first fitted on procedural captions; the
    temporal blocks then learn from each clip's true motion class (none said where the caption is dropped), and
    samples take the classifier's reading of the caption, as the pipeline does.

    ``model.init_from`` names a t2i output (new temporal parts, identity at the start) or a trained keyframe U-Net
    to go on training: a keyframes output or a pipeline folder (the default model, converted KV 1.0 weights),
    with its text projection and, if it has motion classes, its classifier, which is then not fitted again."""

    def __init__(self, config: RunConfig):
        super().__init__(config)
        source = Path(config.model.init_from)
        check_keyframes_parent(config, trained_prediction_type(source), str(source), "keyframes")
        if (source / "keyframe_unet").is_dir() or (source / "pipeline.json").is_file():
            self._go_on(config, source / "keyframe_unet")
        else:
            self._start(config)
        train_temporal_only(self.unet)

    def _start(self, config: RunConfig):
        """New temporal parts (identity at the start) on a T2I output; the motion classifier is fitted first."""
        t2i, folder = load_t2i(config, "a t2i output, or a keyframes output or pipeline folder to go on from")
        self.text = self._text(config, t2i.config.context_dim, folder)
        self.motion_classifier = None
        if config.model.motion_conditioning:
            self.motion_classifier, self.motion_accuracy = fit_motion_classifier(
                self.text, config.model.motion_captions, config.data.seed)
            print(f"motion classifier: {self.motion_accuracy['seen']:.1%} of captions with training phrasings, "
                  f"{self.motion_accuracy['unseen']:.1%} with held-out ones")
        motion_classes = len(self.motion_classifier.config.labels) if self.motion_classifier is not None else 0
        self.unet = KeyframeUNet.from_t2i(t2i, config.model.temporal_variant, motion_classes)

    def _go_on(self, config: RunConfig, folder: Path):
        """A trained keyframe U-Net, which the config must describe, with its text projection and classifier."""
        self.unet = KeyframeUNet.from_pretrained(_folder(folder, "model.init_from's trained keyframe U-Net"))
        classes = self.unet.config.motion_classes
        check_keyframes_continuation(config, self.unet.config.temporal_variant, bool(classes), str(folder))
        self.text = self._text(config, self.unet.config.context_dim, folder)
        self.motion_classifier = None
        if classes:
            classifier = MotionClassifier.from_pretrained(
                _folder(folder / "motion_classifier", f"the motion classifier of {folder}, which has motion classes,"))
            if tuple(classifier.config.labels) != MOTIONS or len(MOTIONS) != classes:
                raise FusionFramesError(f"{folder}: its motion classifier reads {list(classifier.config.labels)} "
                                        f"for {classes} motion classes; this stage's data has {list(MOTIONS)}")
            self.motion_classifier = classifier.requires_grad_(False).eval()

    @staticmethod
    def _text(config: RunConfig, context_dim: int, folder: Path) -> "TextConditioning":
        text = TextConditioning(config.model.text_encoder, context_dim, config.model.max_text_tokens,
                                config.data.cache_dir)
        text.load(folder)
        return text.requires_grad_(False)

    def motion(self, batch, dropped):
        """The batch's motion classes from its labels, none said where the caption was dropped."""
        labels = self.motion_classifier.config.labels
        motion = torch.tensor([labels.index(name) for name in batch["motion"]])
        return torch.where(dropped, self.unet.null_motion, motion)

    def forward(self, batch, generator):
        x0 = self.latents(batch)
        x_t, noise, t = self.noised(x0, generator)
        context, mask, dropped = self.text(batch["caption"], self.config.train.caption_dropout, generator)
        motion = None if self.motion_classifier is None else self.motion(batch, dropped)
        return self.diffusion_loss(self.unet(x_t, t, context, mask, motion=motion), x0, noise, t)

    @torch.no_grad()
    def sample(self, batch, generator):
        """Keyframe videos for the batch's captions, side by side, at 2 FPS."""
        motion = None
        if self.motion_classifier is not None:
            motion = self.motion_classifier.predict(*self.text.encode(batch["caption"]))
        return self.decode(generate_from_captions(self, batch["caption"], self.latents(batch).shape, generator,
                                                  motion=motion)), 2

    def save(self, folder: Path):
        self.unet.save_pretrained(folder / "keyframe_unet")
        self.text.save(folder / "keyframe_unet")
        if self.motion_classifier is not None:
            self.motion_classifier.save_pretrained(folder / "keyframe_unet" / "motion_classifier")


class InterpolationTask(Task):
    """Group interpolation (§3.2): clips of 4G+1 frames, every 4th a (perturbed) keyframe, the 3 between each pair
    predicted in one pass; v-loss (or ``model.prediction_type``); skip-frame s per clip; t_p ∈ [0, max_perturbation];
    keyframes zeroed at rate ``unconditional`` (what context guidance needs).

    ``model.init_from`` names a t2i output (the U-Net is inflated from it) or a trained interpolation U-Net to go on
    training: this stage's output, or a pipeline folder (the default model, converted KV 1.0 weights)."""

    unet_class = InterpolationUNet

    def __init__(self, config: RunConfig):
        super().__init__(config)
        if (config.data.num_frames - 1) % 4 or config.data.num_frames < 5:
            raise FusionFramesError(f"interpolation clips need 4G+1 frames (e.g. 33), got data.num_frames = "
                                    f"{config.data.num_frames}")
        trained = interpolation_parent(config, "this stage's config")
        if trained is not None:  # model.keyframe_init only shapes a U-Net inflated anew
            self.unet = self.unet_class.from_pretrained(trained)
        else:
            t2i, folder = load_t2i(config, "a t2i output, or an interpolation output or pipeline folder to go on "
                                           "from")
            null = load_file(folder / "null_embedding.safetensors")["null_embedding"]
            self.unet = self.build(t2i, null)

    def predict(self, sample, timestep, keyframes, skip_frames, perturbation_timestep=0):
        return self.unet(sample, timestep, keyframes, skip_frames, perturbation_timestep)

    def build(self, t2i, null):
        return InterpolationUNet.from_t2i(t2i, null_embedding=null, keyframe_init=self.config.model.keyframe_init)

    def conditioning(self, video, generator):
        keyframes, middle = video[:, :, ::4], rearrange(video[:, :, 1:], "b c (g k) h w -> b c g k h w", k=4)
        middle = rearrange(middle[:, :, :, :3], "b c g k h w -> b c (g k) h w")
        b = video.shape[0]
        t_p = torch.randint(0, self.config.train.max_perturbation + 1, (b,), generator=generator).to(video.device)
        keyframes = self.schedule.add_noise(keyframes, torch.randn(keyframes.shape, generator=generator)
                                            .to(video.device), t_p)
        keep = (torch.rand(b, generator=generator) >= self.config.train.unconditional).to(video.device)
        return keyframes * keep[:, None, None, None, None], middle, t_p

    def forward(self, batch, generator):
        video = self.latents(batch)
        keyframes, middle, t_p = self.conditioning(video, generator)
        x_t, noise, t = self.noised(middle, generator)
        skip = torch.as_tensor(batch["skip_frames"], device=video.device)
        return self.diffusion_loss(self.predict(x_t, t, keyframes, skip, t_p), middle, noise, t)

    @torch.no_grad()
    def sample(self, batch, generator, steps: int = 25, weight: float = 0.25):
        """The batch's clips rebuilt from every 4th frame: the truth above, the interpolation below."""
        video = self.latents(batch)
        keyframes = video[:, :, ::4]
        skip = torch.as_tensor(batch["skip_frames"], device=video.device)
        middle = sample_ancestral(self.denoiser(keyframes, skip, weight), torch.randn(
            (video.shape[0], video.shape[1], video.shape[2] - keyframes.shape[2], *video.shape[-2:]),
            generator=generator).to(video.device), Schedule.cosine(steps), self.prediction_type, generator,
            frames_per_unit=3, progress=False, threshold_range=self.config.train.sample_threshold_range)
        groups = rearrange(middle, "b c (g k) h w -> b c g k h w", k=3)
        rebuilt = torch.cat([keyframes[:, :, :-1, None], groups], dim=3)
        rebuilt = torch.cat([rearrange(rebuilt, "b c g k h w -> b c (g k) h w"), keyframes[:, :, -1:]], dim=2)
        return torch.cat([self.decode(video), self.decode(rebuilt)], dim=1), 8

    def denoiser(self, keyframes, skip, weight):
        return guided(lambda x, t, k, s: self.predict(x, t, k, s), weight, {"k": keyframes, "s": skip},
                      {"k": torch.zeros_like(keyframes), "s": skip})

    def save(self, folder: Path):
        self.unet.save_pretrained(folder / INTERPOLATION_UNETS[self.config.stage][0])


class MaskedInterpolationTask(InterpolationTask):
    """The masked-frame baseline on the same clips and budget: 5-frame windows, loss on the 3 unknown frames."""

    unet_class = MaskedInterpolationUNet

    def build(self, t2i, null):
        return MaskedInterpolationUNet.from_t2i(t2i, null_embedding=null)

    def predict(self, sample, timestep, keyframes, skip_frames, perturbation_timestep=0):
        return self.unet.predict_groups(sample, timestep, keyframes, skip_frames, perturbation_timestep)

    def forward(self, batch, generator):
        """As the baseline trains: a timestep and noise per 5-frame window (not one per clip)."""
        video = self.latents(batch)
        keyframes, middle, t_p = self.conditioning(video, generator)
        condition, known = masked_windows(keyframes)
        g = keyframes.shape[2] - 1
        windows = torch.cat([condition[:, :, :1], rearrange(middle, "b c (g k) h w -> (b g) c k h w", k=3),
                             condition[:, :, -1:]], dim=2)
        x_t, noise, t = self.noised(windows, generator)
        # The known slots carry the (perturbed) keyframes themselves, as at sampling time.
        x_t = torch.cat([condition[:, :, :1], x_t[:, :, 1:-1], condition[:, :, -1:]], dim=2)
        skip = torch.as_tensor(batch["skip_frames"], device=video.device).repeat_interleave(g)
        prediction = self.unet(x_t, t, condition, known, skip, t_p.repeat_interleave(g))
        unknown = slice(1, -1)
        return self.diffusion_loss(prediction[:, :, unknown], windows[:, :, unknown], noise[:, :, unknown], t)


class ReconstructionLoss:
    """L1 + MSE, plus LPIPS when its weights are supplied locally (``model.perceptual_weights``)."""

    def __init__(self, config: RunConfig):
        weights = config.model.perceptual_weights
        self.weight = config.model.perceptual_weight
        self.perceptual = None
        if weights:
            if set(weights) != {"vgg16", "lpips"}:
                raise FusionFramesError("model.perceptual_weights needs exactly the keys vgg16 and lpips (paths)")
            self.perceptual = Frozen(PerceptualLoss.from_files(weights["vgg16"], weights["lpips"]))

    def __call__(self, reconstruction, target):
        loss = F.l1_loss(reconstruction, target) + F.mse_loss(reconstruction, target)
        if self.perceptual is not None:
            frames = lambda v: v if v.ndim == 4 else rearrange(v, "b c f h w -> (b f) c h w")  # noqa: E731
            loss = loss + self.weight * self.perceptual.on(target.device)(frames(reconstruction), frames(target))
        return loss


class MoVQTask(Task):
    """The image autoencoder: L1 + MSE reconstruction, plus the codebook loss when a codebook is configured."""

    def __init__(self, config: RunConfig):
        super().__init__(config)
        self.autoencoder = MoVQ(**config.model.movq)
        self.reconstruction_loss = ReconstructionLoss(config)
        weight = config.model.discriminator_weight
        self.discriminator = PatchDiscriminator(self.autoencoder.config.in_channels) if weight > 0 else None

    def forward(self, batch, generator):
        images = batch["frames"][:, :, 0]
        reconstruction, codebook_loss = self.autoencoder(images)
        loss = self.reconstruction_loss(reconstruction, images) + codebook_loss
        if self.discriminator is not None:
            # Computed from the first step (a zero weight before the start) so DDP sees every parameter used.
            on = float(batch["step"] >= self.config.model.discriminator_start)
            generator_loss, discriminator_loss = adversarial_losses(self.discriminator, images, reconstruction)
            loss = loss + on * (self.config.model.discriminator_weight * generator_loss + discriminator_loss)
        return loss

    @torch.no_grad()
    def sample(self, batch, generator):
        """Originals above, reconstructions below."""
        images = batch["frames"]
        rebuilt = self.autoencoder.decode(self.autoencoder.encode(images[:, :, 0]))[:, :, None]
        frames = torch.cat([images, rebuilt.float()], dim=3)
        return rearrange(((frames + 1) * 127.5).clamp(0, 255).byte(), "b c f h w -> f h (b w) c").cpu(), 1

    def save(self, folder: Path):
        self.autoencoder.save_pretrained(folder / "movq")


class VideoDecoderTask(Task):
    """A video decoder from a trained image MoVQ (§4.3): encoder frozen; temporal parts or the whole decoder."""

    def __init__(self, config: RunConfig):
        super().__init__(config)
        image = MoVQ.from_pretrained(_folder(config.model.init_from, "model.init_from (an image MoVQ folder)"))
        self.autoencoder = MoVQ.from_image_movq(image, config.model.video_decoder)
        self.autoencoder.set_trainable(config.model.train_part)
        self.reconstruction_loss = ReconstructionLoss(config)

    def forward(self, batch, generator):
        video = batch["frames"]
        with torch.no_grad():
            z = self.autoencoder.encode(video)
        return self.reconstruction_loss(self.autoencoder.decode(z), video)

    @torch.no_grad()
    def sample(self, batch, generator):
        """Original clips above, decoded clips below, at the source rate."""
        video = batch["frames"]
        frames = torch.cat([video, self.autoencoder.decode(self.autoencoder.encode(video)).float()], dim=3)
        return rearrange(((frames + 1) * 127.5).clamp(0, 255).byte(), "b c f h w -> f h (b w) c").cpu(), 24

    def save(self, folder: Path):
        self.autoencoder.save_pretrained(folder / "movq")


TASKS = {"t2i": T2ITask, "keyframes": KeyframesTask, "interpolation": InterpolationTask,
         "masked-interpolation": MaskedInterpolationTask, "movq": MoVQTask, "video-decoder": VideoDecoderTask}
