"""A loss-curve PNG from a run's log.csv, drawn with Pillow (no plotting library needed)."""

import csv
import math
from pathlib import Path

from PIL import Image, ImageDraw


def plot_loss(log_csv, png, width: int = 640, height: int = 360) -> Path:
    """Loss (log scale) against step; a light line per logged point, a dark one for the running mean."""
    with open(log_csv, newline="") as f:
        rows = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f) if float(r["loss"]) > 0]
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 60, width - 20, 20, height - 40
    draw.rectangle([left, top, right, bottom], outline="black")
    if len(rows) >= 2:
        steps, losses = [s for s, _ in rows], [math.log10(v) for _, v in rows]
        lo, hi = min(losses), max(losses)
        hi = hi if hi > lo else lo + 1
        x = lambda s: left + (s - steps[0]) / max(steps[-1] - steps[0], 1) * (right - left)  # noqa: E731
        y = lambda v: bottom - (v - lo) / (hi - lo) * (bottom - top)  # noqa: E731
        draw.line([(x(s), y(v)) for s, v in zip(steps, losses)], fill=(170, 190, 230), width=1)
        window = max(1, len(rows) // 20)
        smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
                  for i in range(len(losses))]
        draw.line([(x(s), y(v)) for s, v in zip(steps, smooth)], fill=(20, 60, 160), width=2)
        draw.text((4, top), f"{10 ** hi:.3g}", fill="black")
        draw.text((4, bottom - 10), f"{10 ** lo:.3g}", fill="black")
        draw.text((left, bottom + 8), f"step {steps[0]}", fill="black")
        draw.text((right - 80, bottom + 8), f"step {steps[-1]}", fill="black")
    draw.text((left + 8, top + 4), "loss (log scale)", fill="black")
    image.save(png)
    return Path(png)
