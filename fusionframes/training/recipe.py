"""A recipe: a folder of stage configs run in name order (each resumed if it was interrupted, skipped if done),
then the stage outputs assembled into one pipeline folder. ``make train-default`` is this on configs/default."""

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from ..errors import FusionFramesError
from ..pipeline import DTYPES, KV1_DEFAULTS, PACKAGED_TEXT_ENCODER
from ..video_io import staged_folder
from .config import (V_PREDICTION_STAGES, check_interpolation_continuation, check_keyframes_continuation,
                     check_keyframes_parent, interpolation_parent, load_config, stage_prediction_type,
                     trained_prediction_type)
from .loop import CHECKPOINT, train


def _normal(path) -> str:
    return os.path.normpath(os.path.abspath(path))


def recipe_configs(folder) -> list:
    """The recipe's stage configs in run order, every one checked."""
    paths = sorted(Path(folder).glob("*.yaml"))
    if not paths:
        raise FusionFramesError(f"no stage configs (*.yaml) in {folder}")
    configs = [load_config(path) for path in paths]
    parents = {}  # this recipe's outputs a later stage may start from or go on training
    for path, config in zip(paths, configs):
        parent_path, parent = parents.get(_normal(config.model.init_from or ""), (None, None))
        if config.stage == "keyframes":
            # A stage of this recipe (earlier in name order) or, failing that, a trained run's or pipeline folder.
            if parent is not None and parent.stage in ("t2i", "keyframes"):
                check_keyframes_parent(config, stage_prediction_type(parent), parent_path.name, path.name)
                if parent.stage == "keyframes":
                    check_keyframes_continuation(config, parent.model.temporal_variant,
                                                 parent.model.motion_conditioning, parent_path.name)
            else:
                check_keyframes_parent(config, trained_prediction_type(config.model.init_from),
                                       config.model.init_from, path.name)
        if config.stage in V_PREDICTION_STAGES:
            if parent is not None and parent.stage in V_PREDICTION_STAGES:
                if parent.stage != config.stage:
                    raise FusionFramesError(f"{path.name} (stage {config.stage}) cannot go on training the "
                                            f"{parent.stage} U-Net of {parent_path.name}")
                check_interpolation_continuation(config, stage_prediction_type(parent), parent_path.name, path.name)
            elif parent is None:
                interpolation_parent(config, path.name)
        parents[_normal(Path(config.output_dir) / "final")] = (path, config)
    return configs


def implied_settings(folder) -> dict:
    """Pipeline settings the trained stages dictate (how each U-Net's output is to be read); a pipeline assembled
    with anything else would sample garbage."""
    names = {"keyframes": "keyframe_prediction_type", "interpolation": "interpolation_prediction_type"}
    return {names[config.stage]: stage_prediction_type(config)
            for config in recipe_configs(folder) if config.stage in names}


def run_recipe(folder, progress: bool = True) -> dict:
    """Train every stage of the recipe; returns {stage: final output folder}."""
    configs = recipe_configs(folder)  # every config checked before any stage trains
    stages = {config.stage for config in configs}
    missing = {"keyframes", "interpolation"} - stages
    if missing or not stages & {"movq", "video-decoder"}:
        raise FusionFramesError(f"the recipe {folder} needs keyframes, interpolation and a movq or video-decoder "
                                f"stage; missing {sorted(missing) or ['movq/video-decoder']}")
    if len({config.train.mixed_precision for config in configs}) > 1:
        raise FusionFramesError("a recipe runs in one process: give every stage the same train.mixed_precision")
    outputs = {}
    for config in configs:
        final = Path(config.output_dir) / "final"
        if final.is_dir() and any(final.iterdir()):
            print(f"{config.stage}: done before, {final}")
        else:
            resume = (Path(config.output_dir) / CHECKPOINT / "trainer_state.json").is_file()
            result = train(config, resume=resume, progress=progress)
            if result["status"] != "finished":
                raise FusionFramesError(f"{config.stage}: {result['status']}")
        outputs[config.stage] = final
    return outputs


def cast_weights(folder, dtype: torch.dtype) -> None:
    """Store every floating-point weight under ``folder`` in ``dtype`` (models load back in float32 unless asked
    otherwise): halves a shipped model's size at no cost in float32 inference beyond the rounding of the weights."""
    for path in sorted(Path(folder).rglob("*.safetensors")):
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(path).items()}
        overflow = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if overflow:
            raise FusionFramesError(f"{path}: {overflow[0]} does not fit {dtype} (overflows); store it in a wider "
                                    f"dtype")
        save_file(tensors, path.with_suffix(".tmp"), metadata={"format": "pt"})
        os.replace(path.with_suffix(".tmp"), path)


def check_pipeline_output(out_dir) -> None:
    """An output folder must be new, empty or a previous pipeline (regenerated whole): checked before training."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) \
            and not (out_dir / "pipeline.json").is_file():
        raise FusionFramesError(f"{out_dir} is not empty and not a pipeline folder; choose another --output")


def assemble_pipeline(out_dir, keyframes, interpolation, movq, text_encoder: str = PACKAGED_TEXT_ENCODER,
                      weights_dtype: Optional[str] = None, model_card=None, **settings) -> Path:
    """A pipeline folder from stage outputs: ``keyframes`` and ``interpolation`` are the stages' ``final``
    folders, ``movq`` a MoVQ folder (the video decoder's, usually); ``weights_dtype`` ("float16", …) the storage
    precision; ``model_card`` a markdown file copied in as README.md. Written atomically: a previous pipeline in
    ``out_dir`` is replaced only once the new one is complete."""
    unknown = set(settings) - set(KV1_DEFAULTS)
    if unknown:
        raise FusionFramesError(f"unknown pipeline settings {sorted(unknown)}")
    if weights_dtype is not None and weights_dtype not in DTYPES:
        raise FusionFramesError(f"unknown weights dtype {weights_dtype!r}; choose {', '.join(DTYPES)}")
    parts = {"keyframe_unet": Path(keyframes) / "keyframe_unet",
             "interpolation_unet": Path(interpolation) / "interpolation_unet", "movq": Path(movq)}
    missing = [str(p) for p in parts.values() if not (p / "config.json").is_file()]
    if missing:
        raise FusionFramesError(f"cannot assemble a pipeline; missing {', '.join(missing)}")
    out_dir = Path(out_dir)
    check_pipeline_output(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    aside = out_dir.with_name(f".{out_dir.name}.previous")
    shutil.rmtree(aside, ignore_errors=True)
    with staged_folder(out_dir) as staging:
        for name, source in parts.items():
            shutil.copytree(source, staging / name)
        if weights_dtype is not None:
            cast_weights(staging, DTYPES[weights_dtype])
        if model_card is not None:
            shutil.copyfile(model_card, staging / "README.md")
        (staging / "pipeline.json").write_text(json.dumps({"text_encoder": text_encoder, **settings}, indent=1)
                                               + "\n")
        if out_dir.exists():
            os.replace(out_dir, aside)
    shutil.rmtree(aside, ignore_errors=True)
    return out_dir
