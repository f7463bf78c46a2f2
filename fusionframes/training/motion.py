"""The keyframe stage's motion classifier, fitted on procedural captions before the temporal blocks train.

Fitting takes seconds on frozen token states, so it runs at the start of the stage (seeded: a resumed run
rebuilds the same classifier, and its checkpoint holds it anyway). Held-out phrasings are only scored, never fitted.
"""

import torch
import torch.nn.functional as F

from ..data.procedural import MOTIONS, ProceduralVideos
from ..models.text import MotionClassifier

FIT_STEPS, FIT_BATCH, FIT_LR = 300, 512, 3e-3
SCORED_CAPTIONS = 1000


def procedural_captions(count: int, seed: int, unseen: bool = False):
    """The captions of the first ``count`` procedural clips (training phrasings, or held-out ones) and their motion
    indices, drawn as the training data draws them."""
    clips = ProceduralVideos(length=count, seed=seed, unseen_captions=unseen)
    described = [clips.describe(i) for i in range(count)]
    return [d["caption"] for d in described], torch.tensor([MOTIONS.index(d["spec"].motion) for d in described])


def fit_motion_classifier(text, num_captions: int, seed: int):
    """A :class:`MotionClassifier` over ``text``'s frozen encoder (a ``TextConditioning``), and its accuracy on
    fresh captions with training and with held-out phrasings."""
    generator = torch.Generator().manual_seed(seed)
    captions, motions = procedural_captions(num_captions, seed)
    hidden, mask = text.states(captions)
    classifier = MotionClassifier(hidden.shape[-1], MOTIONS).to(hidden.device)
    optimiser = torch.optim.AdamW(classifier.parameters(), lr=FIT_LR, weight_decay=1e-3)
    for _ in range(FIT_STEPS):
        pick = torch.randint(0, num_captions, (min(FIT_BATCH, num_captions),), generator=generator)
        loss = F.cross_entropy(classifier(hidden[pick], mask[pick]), motions[pick].to(hidden.device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    classifier.requires_grad_(False).eval()
    accuracy = {}
    for name, unseen in (("seen", False), ("unseen", True)):
        captions, motions = procedural_captions(SCORED_CAPTIONS, seed + 1 + unseen, unseen)
        predicted = classifier.predict(*text.states(captions))
        accuracy[name] = float((predicted.cpu() == motions).float().mean())
    return classifier, accuracy
