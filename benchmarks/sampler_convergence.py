"""In how few steps each diffusers scheduler converges on a trained model (the default model unless --model).

The deterministic schedulers (DDIM, DPM-Solver++, Euler, UniPC) all integrate the same probability-flow ODE, so
from the same starting noise they approach the same sample as the step count grows. The reference is DPM-Solver++
with ``--reference-steps``; each (scheduler, steps) is reported as the RMS distance of its latents to the
reference, relative to the reference's RMS, for the keyframe stage (with guidance) and for one interpolation pass
(s = 3, from the reference keyframes), each read in the model's parameterisation (`pipeline.json`: KV 1.0 predicts
ε and v, the default model v and x₀). KV 1.0's own sampler is ancestral
(stochastic): it does not converge to that point, so it is not in the table.

    python benchmarks/sampler_convergence.py [--model DIR] [--keyframes 8] [--json out.json] [--markdown out.md]
"""

import argparse
import json
import time

import torch

from fusionframes import load_default_pipeline
from fusionframes.pipeline import SAMPLERS, FusionFramesPipeline

PROMPTS = ["a red circle moving to the right", "a blue square drifting upward",
           "a yellow star sliding down and to the left", "a white triangle staying still"]
STEPS = (5, 10, 20, 40)


def relative_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    return float((x - reference).pow(2).mean().sqrt() / reference.pow(2).mean().sqrt())


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline folder (default: the embedded default model)")
    parser.add_argument("--keyframes", type=int, default=8)
    parser.add_argument("--reference-steps", type=int, default=100)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--markdown", help="also write the table here")
    args = parser.parse_args()
    pipe = FusionFramesPipeline.from_pretrained(args.model) if args.model else load_default_pipeline()
    pipe.progress = False
    contexts = pipe.encode_prompt(PROMPTS)
    size = pipe.valid_size(pipe.defaults["height"], pipe.defaults["width"])
    w, w_interp = pipe.defaults["guidance_scale"], pipe.defaults["interpolation_guidance_scale"]

    def seeded():
        return [torch.Generator().manual_seed(i) for i in range(len(PROMPTS))]

    def keyframes(steps):
        return pipe.generate_keyframes(contexts, None, args.keyframes, size, steps, w, seeded())

    def interpolate(latents, steps):
        video = pipe.interpolate(latents, 3, steps, w_interp, seeded())
        return video[:, :, [i for i in range(video.shape[2]) if i % 4]]  # the new frames only

    pipe.use_sampler("dpm++")
    start = time.perf_counter()
    ref_keyframes = keyframes(args.reference_steps)
    ref_interpolation = interpolate(ref_keyframes, args.reference_steps)
    rows = []
    for name in (n for n in SAMPLERS if SAMPLERS[n] is not None):
        pipe.use_sampler(name)
        for steps in STEPS:
            rows.append(dict(sampler=name, steps=steps,
                             keyframes=relative_error(keyframes(steps), ref_keyframes),
                             interpolation=relative_error(interpolate(ref_keyframes, steps), ref_interpolation)))
            print(json.dumps(rows[-1]), flush=True)
    result = dict(prompts=PROMPTS, keyframes=args.keyframes, reference=f"dpm++ {args.reference_steps} steps",
                  seconds=round(time.perf_counter() - start, 1), rows=rows)
    lines = ["| sampler | " + " | ".join(f"{s} steps (keyframes / interpolation)" for s in STEPS) + " |",
             "|---" * (len(STEPS) + 1) + "|"]
    for name in dict.fromkeys(r["sampler"] for r in rows):
        cells = [f"{r['keyframes']:.3f} / {r['interpolation']:.3f}" for r in rows if r["sampler"] == name]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
