"""A disk cache of frozen-encoder outputs (MoVQ latents, text-encoder states), so U-Nets train without
re-encoding. A cache folder belongs to one encoder and one data recipe: its identity (configs and a digest of
the encoder's weights) is stored with it, and a cache made by anything else is refused, never silently reused."""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import FusionFramesError


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class EncoderCache:
    def __init__(self, folder, identity: dict):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = self.folder / "identity.json"
        text = json.dumps(identity, sort_keys=True, default=str)
        if stamp.is_file():
            if json.loads(stamp.read_text()) != json.loads(text):
                raise FusionFramesError(f"the cache in {self.folder} was made by another encoder or data recipe; "
                                        f"delete it or choose another data.cache_dir")
        else:
            stamp.write_text(text)

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
                fd, tmp = tempfile.mkstemp(suffix=".safetensors", dir=self.folder)
                os.close(fd)
                save_file(entry, tmp)
                os.replace(tmp, self._path(keys[i]))
                found[i] = entry
        return [found[i] for i in range(len(keys))]
