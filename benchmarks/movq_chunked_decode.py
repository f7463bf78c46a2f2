"""How far a chunked video decode is from decoding the whole video at once, for every MoVQ decoder.

A small MoVQ with random weights (temporal parts randomised too, so that frames really interact) decodes a
random latent video whole and in overlapping windows (``MoVQ.decode(z, chunk_size, chunk_overlap)``); the table
gives max |chunked − whole| relative to the output's standard deviation. Convolution-only decoders become exact
once the overlap covers twice their temporal receptive-field radius; decoders with temporal attention see every
frame of their window, so they only converge.

    python benchmarks/movq_chunked_decode.py [--frames 24 --chunk 8 --json out.json]
"""

import argparse
import json

import torch

from fusionframes.models.movq import VIDEO_DECODERS, MoVQ

CONFIG = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16, norm_groups=8)


def receptive_radius(model: MoVQ) -> int:
    """Frames of temporal context on each side of an output frame (3-tap temporal convs only)."""
    blocks = 2 + len(model.config.ch_mult) * (model.config.num_res_blocks + 1)
    per_block = {"resblock-attn": 2, None: 0}.get(model.config.video_decoder, 2)
    return blocks * per_block


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    overlaps = [o for o in (0, 2, 4, 6) if o < args.chunk]
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, args.frames, 8, 8, generator=generator)
    rows = []
    for variant in [None, *VIDEO_DECODERS]:
        model = MoVQ(**CONFIG, video_decoder=variant).eval()
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.3 if p.ndim < 2 else p[0].numel() ** -0.5))
        whole = model.decode(latents)
        errors = {o: ((model.decode(latents, args.chunk, o) - whole).abs().max() / whole.std()).item()
                  for o in overlaps}
        rows.append({"decoder": variant or "image", "radius": receptive_radius(model), "errors": errors})
    print(f"{args.frames} frames, windows of {args.chunk}: max |chunked − whole| / std(whole)\n")
    print("| decoder | temporal radius | " + " | ".join(f"overlap {o}" for o in overlaps) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in overlaps) + " |")
    for row in rows:
        radius = "∞ (attention)" if "attn" in row["decoder"] else str(row["radius"])
        print(f"| {row['decoder']} | {radius} | " + " | ".join(f"{row['errors'][o]:.1e}" for o in overlaps) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"frames": args.frames, "chunk": args.chunk, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
