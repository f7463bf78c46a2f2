"""A disk cache of frozen-encoder outputs (MoVQ latents, text-encoder states), so U-Nets train without
re-encoding. A cache folder belongs to one encoder and one data recipe: its identity (configs and a digest of
the encoder's weights) is stored with it, and a cache made by anything else is refused, never silently reused."""

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..video_io import claim_folder, write_atomic


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class EncoderCache:
    def __init__(self, folder, identity: dict):
        self.folder = claim_folder(folder, identity, f"the cache in {folder} was made by another encoder or data "
                                                     f"recipe; delete it or choose another data.cache_dir")

    def _path(self, key: str) -> Path:
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.safetensors"

    def fetch(self, keys: list, compute):
        """One dict of tensors per key: from disk where cached, else from ``compute(missing_positions)`` (which
        returns a dict of batched tensors for those positions), written atomically for next time."""
        found = {i: load_file(self._path(k)) for i, k in enumerate(keys) if self._path(k).is_file()}
        missing = [i for i in range(len(keys)) if i not in found]
        if missing:
            computed = compute(missing)
            for row, i in enumerate(missing):
                entry = {name: value[row].detach().cpu().contiguous() for name, value in computed.items()}
                write_atomic(self._path(keys[i]), lambda tmp: save_file(entry, tmp))
                found[i] = entry
        return [found[i] for i in range(len(keys))]
