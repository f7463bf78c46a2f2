"""Video decoding of the default model: memory layout × dtype × window size, measured side by side in one run.

Inference decodes channels-last (``MoVQ._decode``); under autograd the decoder keeps NCHW, which is how the
"NCHW" rows are produced here (every parameter frozen, so no graph is recorded). Each row decodes the same
random latents of ``--frames`` frames at 128² in windows of ``--window`` frames overlapping by 2 and reports the
best of ``--repeats`` times, the ratio to the NCHW float32 row of the same window, the peak resident memory of the
process so far, and the PSNR against NCHW float32 (value range [−1, 1]).

    python benchmarks/decode_layout.py [--frames 241 --windows 8 16 32 --json out.json]
"""

import argparse
import contextlib
import json
import resource
import time

import torch

import fusionframes


def decode(movq, latents, window: int, layout: str, repeats: int):
    # The NCHW path is the autograd one: with every parameter frozen, grad mode records nothing.
    mode = torch.enable_grad() if layout == "NCHW" else contextlib.nullcontext()
    times = []
    with mode:
        for _ in range(repeats):
            start = time.perf_counter()
            out = movq.decode(latents, window, 2)
            times.append(time.perf_counter() - start)
    return min(times), out.float()


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=241)
    parser.add_argument("--windows", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    fusionframes.keep_freed_memory()
    movq = fusionframes.load_default_pipeline().movq.requires_grad_(False)
    latents = torch.randn(1, 4, args.frames, 16, 16, generator=torch.Generator().manual_seed(0))
    rows = []
    for window in args.windows:
        reference = baseline = None
        for dtype in (torch.float32, torch.bfloat16):
            torch.nn.Module.to(movq, dtype=dtype)
            for layout in ("NCHW", "channels-last"):
                seconds, out = decode(movq, latents.to(dtype), window, layout, args.repeats)
                if reference is None:
                    reference, baseline = out, seconds
                mse = (out - reference).square().mean().item()
                rows.append(dict(window=window, dtype=str(dtype).replace("torch.", ""), layout=layout,
                                 seconds=seconds, speedup=baseline / seconds,
                                 peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                                 psnr_db=None if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()))
                print(rows[-1], flush=True)
    torch.nn.Module.to(movq, dtype=torch.float32)
    print(f"\n{args.frames} frames at 128², windows overlapping by 2, {torch.get_num_threads()} threads\n")
    print("| window | dtype | layout | seconds | × NCHW float32 | peak RSS so far, MB | PSNR vs NCHW float32 |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        psnr = "—" if r["psnr_db"] is None else f"{r['psnr_db']:.1f} dB"
        print(f"| {r['window']} | {r['dtype']} | {r['layout']} | {r['seconds']:.2f} | {r['speedup']:.2f}× | "
              f"{r['peak_rss_mb']} | {psnr} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"frames": args.frames, "threads": torch.get_num_threads(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
