"""CLIPSIM: text-video alignment as the mean over frames of the CLIP image-text cosine similarity.

Protocol (as in the MSR-VTT evaluations of Make-A-Video and FusionFrames): every frame of a generated video is
preprocessed by the CLIP model's own image processor (shortest side resized to the model's input size, bicubic,
centre crop, CLIP normalisation), embedded, L2-normalised and compared with the L2-normalised text embedding of the
caption; a video's score is the mean over its frames, the set's score the mean over videos. The raw cosine is
reported (not ×100). The CLIP model is read from a local transformers folder — the field's usual choice is
``openai/clip-vit-base-patch32`` (ViT-B/32) — and never downloaded.
"""

from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch

from ..errors import FusionFramesError


class CLIPSim:
    def __init__(self, model_path, device="cpu", batch_size: int = 64):
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise FusionFramesError(
                f"CLIPSIM needs a local CLIP model folder (config.json, weights, tokenizer and "
                f"preprocessor_config.json); {path} has none. The protocol's usual model is "
                f"openai/clip-vit-base-patch32 from Hugging Face: download it elsewhere and pass its folder")
        self.model = CLIPModel.from_pretrained(path).eval().requires_grad_(False).to(device)
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.device, self.batch_size = torch.device(device), batch_size

    @torch.no_grad()
    def text_embeddings(self, captions: Sequence[str]) -> torch.Tensor:
        limit = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(list(captions), padding=True, truncation=True, max_length=limit, return_tensors="pt")
        features = self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()})
        return torch.nn.functional.normalize(_tensor(features).float(), dim=-1)

    @torch.no_grad()
    def image_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        """(F, H, W, 3) uint8 frames → (F, D) unit embeddings."""
        out = []
        for start in range(0, len(frames), self.batch_size):
            pixels = self.processor(images=list(frames[start:start + self.batch_size]), return_tensors="pt")
            features = self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device))
            out.append(torch.nn.functional.normalize(_tensor(features).float(), dim=-1))
        return torch.cat(out)

    def __call__(self, videos: Sequence[np.ndarray], captions: Sequence[str]) -> List[float]:
        """Per video, the mean over its frames of cos(image, caption)."""
        if len(videos) != len(captions):
            raise FusionFramesError(f"{len(videos)} videos for {len(captions)} captions")
        text = self.text_embeddings(captions)
        scores = []
        for video, t in zip(videos, text):
            video = np.asarray(video)
            if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
                raise FusionFramesError(f"videos must be uint8 (frames, height, width, 3), got {video.dtype} "
                                        f"{video.shape}")
            scores.append(float((self.image_embeddings(video) @ t).mean()))
        return scores


def _tensor(features) -> torch.Tensor:
    """The projected features: transformers ≥ 5 returns them as a model output's ``pooler_output``, earlier
    versions as the tensor itself."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output
