"""The official Kandinsky Video checkpoint layouts, and nothing else knows about them.

``kandinsky_video.pt`` = ``{'unet', 'null_embedding', 'projections'}``, ``kandinsky_video_interpolation.pt`` =
``{'unet', 'null_embedding'}``, ``movq.pt`` (KV 1.0) and ``video_movq.pt`` (KV 1.1) = plain MoVQ state dicts;
keys are the official module names, listed in ``shared/reference/manifests``. Our U-Nets keep the official leaf
names and rename only index-addressed containers (``resnet_attn_blocks.i.j`` → ``pairs.i.<role>``), so the
mapping is a few regular expressions; MoVQ names are the official ones unchanged.
"""

import re
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import save_file

from ..errors import FusionFramesError
from ..models.interpolation import InterpolationUNet
from ..models.movq import MoVQ
from ..models.presets import KANDINSKY3, KV1_MOVQ
from ..models.text import TextProjection
from ..models.unet import KeyframeUNet
from ..video_io import staged_folder

PAIR_ROLES = ["in_resnet", "cross_attention", "out_resnet", "in_temporal", "out_temporal"]
TEMPORAL_LAYER_ROLES = {"0": "norm", "2": "conv"}

# (official pattern, ours) in both directions; each pattern names one container level.
_TO_OURS = [
    (r"\.resnet_attn_blocks\.(\d+)\.(\d)\.", lambda m: f".pairs.{m[1]}.{PAIR_ROLES[int(m[2])]}."),
    (r"\.temporal_resnet_blocks\.(\d+)\.([02])\.", lambda m: f".layers.{m[1]}.{TEMPORAL_LAYER_ROLES[m[2]]}."),
    (r"\.temporal_merge$", lambda m: ".temporal.alpha"),
    (r"\.temporal_projection\.", lambda m: ".temporal.conv."),
]
_TO_OFFICIAL = [
    (r"\.pairs\.(\d+)\.(\w+)\.", lambda m: f".resnet_attn_blocks.{m[1]}.{PAIR_ROLES.index(m[2])}."),
    (r"\.layers\.(\d+)\.(norm|conv)\.",
     lambda m: f".temporal_resnet_blocks.{m[1]}.{ {'norm': 0, 'conv': 2}[m[2]] }."),
    (r"\.temporal\.alpha$", lambda m: ".temporal_merge"),
    (r"\.temporal\.conv\.", lambda m: ".temporal_projection."),
]
SHARD_SIZE = "2GB"
_TEXT_PROJECTION = {"t5.0.weight": "linear.weight", "t5.1.weight": "norm.weight", "t5.1.bias": "norm.bias"}

COMPONENTS = {"keyframe-unet": KeyframeUNet, "interpolation-unet": InterpolationUNet, "movq": MoVQ,
              "video-movq": MoVQ}
MOVQ_COMPONENTS = ("movq", "video-movq")
# Official constructor kwargs that have no config key here: the frame count is read from the input at run time,
# and `interpolation` is which class is built.
_RUNTIME_KWARGS = {"num_frames", "interpolation"}


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def official_to_ours(key: str) -> str:
    return _rename(key, _TO_OURS)


def ours_to_official(key: str) -> str:
    return _rename(key, _TO_OFFICIAL)


def default_official_config(component: str) -> dict:
    if component in MOVQ_COMPONENTS:
        config = {**KV1_MOVQ, "double_z": False}
        if component == "video-movq":  # KV 1.1 ships the paper's production decoder: 3×3×3 convs + attention
            config.update(OFFICIAL_VIDEO_DECODER_KWARGS["conv3x3x3-attn"])
        return config
    config = dict(KANDINSKY3)
    if component == "interpolation-unet":
        config.update(num_channels=20, out_channels=12, interpolation=True)
    else:
        config.update(num_frames=15)
    return config


# Official MoVQ generator kwargs that must keep their default here (other values build modules we do not have).
_MOVQ_FIXED = {"double_z": False, "resamp_with_conv": True, "give_pre_end": False, "add_conv": False,
               "temporal_mid_blocks": True, "flicker_augmentation": False}
_MOVQ_VIDEO_FLAGS = {"temporal", "temporal_kernel_size", "temporal_conv_padding", "temporal_attention_block",
                     "temporal_blocks", "build_3D_decoder"}


# The official generator kwargs that select each video decoder of the paper (merged into the image config).
OFFICIAL_VIDEO_DECODER_KWARGS = {
    "conv3x1x1": dict(temporal=True, temporal_kernel_size=(3, 1, 1), temporal_conv_padding=(1, 0, 0)),
    "conv3x3x3": dict(temporal=True),
    "conv3x1x1-attn": dict(temporal=True, temporal_kernel_size=(3, 1, 1), temporal_conv_padding=(1, 0, 0),
                           temporal_attention_block=True),
    "conv3x3x3-attn": dict(temporal=True, temporal_attention_block=True),
    "resblock-attn": dict(temporal_blocks=True, temporal_attention_block=True),
    "3d-conv": dict(build_3D_decoder=True),
}


def _video_decoder(official: dict) -> Optional[str]:
    """The video decoder the official flags select (None: the image decoder)."""
    kernel = tuple(official.get("temporal_kernel_size", (3, 3, 3)))
    padding = tuple(official.get("temporal_conv_padding", (1, 1, 1)))
    attention = bool(official.get("temporal_attention_block", False))
    flags = (bool(official.get("temporal", False)), bool(official.get("temporal_blocks", False)),
             bool(official.get("build_3D_decoder", False)))
    if flags == (False, False, False):
        name = "image" if not attention else None
    elif flags == (True, False, False) and kernel in ((3, 1, 1), (3, 3, 3)) \
            and padding == tuple(k // 2 for k in kernel):
        name = "conv3x1x1" if kernel == (3, 1, 1) else "conv3x3x3"
        name += "-attn" if attention else ""
    elif flags == (False, True, False) and attention:
        name = "resblock-attn"
    elif flags == (False, False, True) and not attention:
        name = "3d-conv"
    else:
        name = None
    if name is None:
        raise FusionFramesError(f"these official video-decoder flags select no decoder of the paper: "
                                f"{ {k: official[k] for k in _MOVQ_VIDEO_FLAGS if k in official} }")
    return None if name == "image" else name


def movq_config(component: str, official: dict) -> dict:
    allowed = set(KV1_MOVQ) | set(_MOVQ_FIXED) | _MOVQ_VIDEO_FLAGS
    unknown = sorted(set(official) - allowed)
    if unknown:
        raise FusionFramesError(f"unknown official MoVQ config keys {unknown}; expected some of {sorted(allowed)}")
    for key, value in _MOVQ_FIXED.items():
        if key in official and official[key] != value:
            raise FusionFramesError(f"official MoVQ config {key}={official[key]!r} is not supported (only {value!r})")
    video_decoder = _video_decoder(official)
    if (video_decoder is None) != (component == "movq"):
        raise FusionFramesError(f"the config's video-decoder flags describe "
                                f"{video_decoder or 'an image decoder'}, not a {component}")
    config = {k: v for k, v in official.items() if k in KV1_MOVQ}
    # KV 1.1's spatial attention norms see the first frame's latent; its video MoVQ is reproduced exactly so.
    spatial_attention_zq = "first-frame" if component == "video-movq" else "per-frame"
    return {**config, "video_decoder": video_decoder, "spatial_attention_zq": spatial_attention_zq}


def model_config(component: str, official_config: Optional[dict]) -> dict:
    """Our config from the official constructor kwargs (default: full KV 1.0 size)."""
    _check_component(component)
    official = default_official_config(component) if official_config is None else dict(official_config)
    if component in MOVQ_COMPONENTS:
        return movq_config(component, official)
    allowed = set(KANDINSKY3) | _RUNTIME_KWARGS
    unknown = sorted(set(official) - allowed)
    if unknown:
        raise FusionFramesError(f"unknown official config keys {unknown}; expected some of {sorted(allowed)}")
    if bool(official.get("interpolation", False)) != (component == "interpolation-unet"):
        raise FusionFramesError(f"config has interpolation={official.get('interpolation', False)}, "
                                f"which does not describe a {component}")
    return {k: v for k, v in official.items() if k not in _RUNTIME_KWARGS}


def _check_component(component: str):
    if component not in COMPONENTS:
        raise FusionFramesError(f"unknown component {component!r}; choose one of: {', '.join(COMPONENTS)}")


def read_checkpoint(path) -> dict:
    """``torch.load`` with ``weights_only`` and memory mapping, so a 16 GB file costs no RAM until used."""
    path = Path(path)
    if not path.is_file():
        raise FusionFramesError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises RuntimeError/EOFError/UnpicklingError for damaged files
        raise FusionFramesError(f"cannot read checkpoint {path}: {error}. Is the file complete (not truncated) "
                                f"and an official Kandinsky Video .pt file?") from None


def _describe(keys, limit=8) -> str:
    keys = sorted(keys)
    more = f" … and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_state_into(model: torch.nn.Module, state: dict, source: str, key_name=lambda key: key) -> torch.nn.Module:
    """Strict load that names every missing, unexpected or mis-shaped key (as ``key_name`` spells it, i.e. as the
    file does); assigns tensors (no copy)."""
    expected = model.state_dict()
    missing = {key_name(k) for k in set(expected) - set(state)}
    unexpected = {key_name(k) for k in set(state) - set(expected)}
    misshaped = [f"{key_name(k)} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
                 for k in set(state) & set(expected) if state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {_describe(misshaped)}")
    if problems:
        raise FusionFramesError(f"{source} does not match the model configuration ({'; '.join(problems)}). "
                                f"Pass the official constructor kwargs with --config if the checkpoint is not "
                                f"the default size or variant.")
    model.load_state_dict(state, strict=True, assign=True)
    return model


def official_state_to_model(component: str, checkpoint: dict, config: Optional[dict] = None,
                            source: str = "checkpoint"):
    """Build ``component`` on the meta device and assign the checkpoint's tensors; returns (model, extras)."""
    ours = model_config(component, config)
    cls = COMPONENTS[component]
    if not isinstance(checkpoint, dict):
        raise FusionFramesError(f"{source} holds a {type(checkpoint).__name__}, not a checkpoint dictionary")
    if component in MOVQ_COMPONENTS:
        if not all(torch.is_tensor(v) for v in checkpoint.values()):
            raise FusionFramesError(f"{source} is not a MoVQ state dict of tensors")
        with torch.device("meta"):
            model = cls(**ours)
        return load_state_into(model, dict(checkpoint), source), {}
    unet_state = checkpoint.get("unet", checkpoint)
    if not isinstance(unet_state, dict) or not all(torch.is_tensor(v) for v in unet_state.values()):
        raise FusionFramesError(f"{source} has no 'unet' state dict of tensors")
    state = {official_to_ours(k): v for k, v in unet_state.items()}
    extras = {}
    null_embedding = checkpoint.get("null_embedding") if "unet" in checkpoint else None
    if component == "interpolation-unet" and null_embedding is not None:
        state["null_embedding"] = null_embedding.reshape(-1)
    elif null_embedding is not None:
        extras["null_embedding"] = null_embedding.reshape(-1)
    if "projections" in checkpoint:
        projections = checkpoint["projections"]
        if set(projections) != set(_TEXT_PROJECTION):
            raise FusionFramesError(f"{source}: unexpected text projection keys {sorted(projections)}")
        extras["text_projection"] = {_TEXT_PROJECTION[k]: v for k, v in projections.items()}
    with torch.device("meta"):
        model = cls(**ours)
    return load_state_into(model, state, source, key_name=ours_to_official), extras


def load_official(component: str, checkpoint_path, config: Optional[dict] = None, return_extras: bool = False):
    """Our ``component`` model with an official checkpoint loaded: ``keyframe-unet``, ``interpolation-unet``
    (KV 1.0 U-Nets), ``movq`` (KV 1.0 ``movq.pt``) or ``video-movq`` (KV 1.1 ``video_movq.pt``).

    ``config`` is the official constructor's kwargs (default: full KV 1.0 size; for ``video-movq`` the 3×3×3 +
    attention decoder; the MoVQ generator kwargs' temporal flags select the other video decoders). With
    ``return_extras`` also
    returns ``{'null_embedding': …, 'text_projection': {…}}`` where the checkpoint has them (keyframe file).
    Tensors stay memory-mapped from the file until moved or converted.
    """
    _check_component(component)
    checkpoint = read_checkpoint(checkpoint_path)
    model, extras = official_state_to_model(component, checkpoint, config, source=str(checkpoint_path))
    return (model, extras) if return_extras else model


def convert_official(component: str, checkpoint_path, out_dir, config: Optional[dict] = None) -> Path:
    """Write a ``from_pretrained`` folder (config.json + safetensors) and, where present, ``null_embedding.
    safetensors`` and ``text_projection/``. Written to a temporary folder first, so a failure leaves nothing."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FusionFramesError(f"output {out_dir} is not empty (or not a folder); choose a new folder")
    model, extras = load_official(component, checkpoint_path, config, return_extras=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(out_dir) as staging:
        # Small shards bound the serialisation buffer: safetensors copies a whole shard into memory to write it.
        model.save_pretrained(staging, safe_serialization=True, max_shard_size=SHARD_SIZE)
        if "null_embedding" in extras:
            save_file({"null_embedding": extras["null_embedding"].contiguous()}, staging / "null_embedding.safetensors")
        if "text_projection" in extras:
            weight = extras["text_projection"]["linear.weight"]
            with torch.device("meta"):
                projection = TextProjection(encoder_dim=weight.shape[1], context_dim=weight.shape[0])
            load_state_into(projection, extras["text_projection"], f"{checkpoint_path} projections")
            projection.save_pretrained(staging / "text_projection", safe_serialization=True)
    return out_dir
