"""The held-out prompt set of ``fusionframes eval alignment``: 224 prompts with their intended labels.

Three groups, each prompt the caption of a clip spec drawn by :func:`~fusionframes.data.procedural.sample_spec`:

* ``seen`` (80): training colour × shape × motion triples, captioned with training phrasings;
* ``unseen_phrasing`` (80): training triples, captioned with held-out phrasings (``caption(spec, rng, unseen=True)``:
  every one contains a phrase of ``HELD_OUT_PHRASINGS``);
* ``held_out_combination`` (64): each of the 32 ``HELD_OUT_COMBINATIONS`` twice, captioned with training phrasings,
  so the group measures composition alone.

Colours and motions are balanced within the first two groups (item ``i`` has colour ``i mod 8`` and motion
``(i + offset) mod 9``), shapes drawn. Everything follows from :data:`SEED`; the list ships as ``prompts.jsonl`` beside
this module so it never changes silently (a test regenerates it and compares). Each line holds ``id``, ``group``,
``prompt`` and the clip's ``color``, ``shape``, ``motion``, ``background``, ``size``, ``speed``, ``x0``, ``y0``
(:func:`spec_of` rebuilds the spec; a prompt names the size or speed only sometimes, as training captions do).

Regenerate (only on purpose, e.g. after a vocabulary change): ``python -m fusionframes.evaluation.prompts --write``.
"""

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..data.procedural import COLORS, HELD_OUT_COMBINATIONS, MOTIONS, SHAPES, ClipSpec, caption, sample_spec
from ..errors import FusionFramesError

SEED = 6006
GROUP_SIZES: Dict[str, int] = {"seen": 80, "unseen_phrasing": 80, "held_out_combination": 64}
PROMPTS_FILE = Path(__file__).with_name("prompts.jsonl")
FIELDS = ("id", "group", "prompt", "color", "shape", "motion", "background", "size", "speed", "x0", "y0")
_MOTION_OFFSET = {"seen": 0, "unseen_phrasing": 4}
_HELD_OUT = frozenset(HELD_OUT_COMBINATIONS)


def _spec_with(rng: np.random.Generator, triple, held_out: bool) -> ClipSpec:
    """A spec drawn from the training (or held-out) distribution conditioned on its colour × shape × motion."""
    for _ in range(100_000):
        spec = sample_spec(rng, held_out=held_out)
        if (spec.color, spec.shape, spec.motion) == triple:
            return spec
    raise RuntimeError(f"no spec drawn for {triple}")  # pragma: no cover - a triple is drawn with p ≥ 1/256


def _targets(group: str, seed: int) -> List[tuple]:
    if group == "held_out_combination":
        return [HELD_OUT_COMBINATIONS[i % len(HELD_OUT_COMBINATIONS)] for i in range(GROUP_SIZES[group])]
    rng = np.random.default_rng((seed, list(GROUP_SIZES).index(group), 1 << 20))
    colors, targets = tuple(COLORS), []
    for i in range(GROUP_SIZES[group]):
        color, motion = colors[i % len(colors)], MOTIONS[(i + _MOTION_OFFSET[group]) % len(MOTIONS)]
        shapes = [s for s in SHAPES if (color, s, motion) not in _HELD_OUT]
        targets.append((color, shapes[int(rng.integers(len(shapes)))], motion))
    return targets


def generate_prompt_set(seed: int = SEED) -> List[dict]:
    """The prompt set, deterministically from ``seed`` (item ``i`` of group ``g`` uses only ``(seed, g, i)``)."""
    records, used = [], set()
    for g, group in enumerate(GROUP_SIZES):
        for i, triple in enumerate(_targets(group, seed)):
            rng = np.random.default_rng((seed, g, i))
            spec = _spec_with(rng, triple, held_out=group == "held_out_combination")
            text = caption(spec, rng, unseen=group == "unseen_phrasing")
            while text.lower().rstrip(".") in used:  # every prompt distinct
                text = caption(spec, rng, unseen=group == "unseen_phrasing")
            used.add(text.lower().rstrip("."))
            records.append(dict(id=f"{group}-{i:03d}", group=group, prompt=text, color=spec.color, shape=spec.shape,
                                motion=spec.motion, background=spec.background, size=spec.size, speed=spec.speed,
                                x0=round(spec.x0, 4), y0=round(spec.y0, 4)))
    return records


def dumps(records: List[dict]) -> str:
    """JSON Lines, one record a line, keys in :data:`FIELDS` order."""
    return "".join(json.dumps({k: r[k] for k in FIELDS}, ensure_ascii=False) + "\n" for r in records)


def load_prompt_set(path=None) -> List[dict]:
    """The shipped prompt set (or the JSONL file at ``path``) as a list of dicts."""
    path = Path(path) if path is not None else PROMPTS_FILE
    if not path.is_file():
        raise FusionFramesError(f"prompt set {path} not found")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise FusionFramesError(f"{path}:{n}: not JSON ({e.msg})") from None
    return records


def spec_of(record: dict) -> ClipSpec:
    """The clip spec a prompt record describes (for renders of the intended video)."""
    return ClipSpec(record["color"], record["shape"], record["motion"], record.get("background", "black"),
                    record.get("size", "medium"), record.get("speed", "normal"), record.get("x0", 0.5),
                    record.get("y0", 0.5))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="regenerate or check the shipped held-out prompt set")
    parser.add_argument("--write", action="store_true", help=f"write {PROMPTS_FILE.name} from the generator")
    args = parser.parse_args(argv)
    text = dumps(generate_prompt_set())
    if args.write:
        PROMPTS_FILE.write_text(text, encoding="utf-8")
        print(f"wrote {PROMPTS_FILE} ({text.count(chr(10))} prompts)")
        return 0
    same = PROMPTS_FILE.is_file() and PROMPTS_FILE.read_text(encoding="utf-8") == text
    print(f"{PROMPTS_FILE} {'matches' if same else 'differs from'} the generator")
    return 0 if same else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
