"""Measuring a text-to-video model: ``alignment`` reads procedural-style videos' labels from their pixels and scores
a generator on the held-out prompt set of ``prompts`` (shipped as ``prompts.jsonl``); ``metrics`` holds the field's
distribution and reconstruction metrics (Fréchet distance, inception score, PSNR, SSIM, MSE); ``i3d`` computes FVD
with the Kinetics-400 I3D as StyleGAN-V does, ``c3d`` the inception score with the UCF-101 C3D as TGANv2 does."""

from .alignment import (ATTRIBUTES, FPS_LEVELS, GROUPS, TARGETS, classify_color, classify_shape, degrade,
                        evaluate_alignment, evaluate_renders, format_markdown, read_video_labels, render_times)
from .c3d import C3D, InceptionScoreC3D, load_c3d
from .i3d import FVD, I3D, load_i3d
from .metrics import feature_statistics, frechet_distance, inception_score, lpips, mse, psnr, ssim

_PROMPTS = ("PROMPTS_FILE", "generate_prompt_set", "load_prompt_set", "spec_of")


def __getattr__(name):  # the prompts module loads on first use (so ``python -m ...prompts`` runs it cleanly)
    if name in _PROMPTS:
        from . import prompts
        return getattr(prompts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ATTRIBUTES", "FPS_LEVELS", "GROUPS", "TARGETS", "classify_color", "classify_shape", "degrade",
           "evaluate_alignment", "evaluate_renders", "format_markdown", "read_video_labels", "render_times",
           "PROMPTS_FILE", "generate_prompt_set", "load_prompt_set", "spec_of", "feature_statistics",
           "frechet_distance", "inception_score", "lpips", "mse", "psnr", "ssim", "C3D", "InceptionScoreC3D",
           "load_c3d",
           "FVD", "I3D", "load_i3d"]
