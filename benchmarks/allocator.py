"""What keeping freed memory in the process (``fusionframes.keep_freed_memory``, applied by the CLI) is worth.

The default model generates the same fps "high" video (241 frames) twice, each in a fresh process: once with the
C library's default malloc settings, once with freed blocks kept. The table gives seconds per stage, minor page
faults and peak resident memory, and the ratios.

    python benchmarks/allocator.py [--model DIR] [--out benchmarks/results]
"""

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from fusionframes import DEFAULT_MODEL, keep_freed_memory
from fusionframes.bench import in_fresh_process, peak_memory_mb
from fusionframes.pipeline import FusionFramesPipeline


def _generate(model: str, keep: bool, queue) -> None:
    try:
        if keep and not keep_freed_memory():
            raise RuntimeError("this C library has no mallopt: nothing to compare")
        pipe = FusionFramesPipeline.from_pretrained(model)
        pipe.progress = False
        pipe("warm-up", num_keyframes=2, fps="medium", num_inference_steps=1, interpolation_steps=1)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        out = pipe("a red circle moving to the right", fps="high", output_type="np",
                   generator=torch.Generator().manual_seed(0))
        queue.put(dict(seconds=time.perf_counter() - start, stages=out.timings, peak_rss_mb=peak_memory_mb(),
                       page_faults=resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))
    except BaseException as error:
        queue.put(dict(error=f"{type(error).__name__}: {error}"))


def markdown(result: dict) -> str:
    d, k = result["default"], result["keep_freed_memory"]
    rows = ["| | C library defaults | freed memory kept | ratio |", "|---|---|---|---|"]
    for stage in d["stages"]:
        rows.append(f"| {stage} s | {d['stages'][stage]:.2f} | {k['stages'][stage]:.2f} | "
                    f"{d['stages'][stage] / max(k['stages'][stage], 1e-9):.2f}× |")
    rows += [f"| whole generation s | {d['seconds']:.1f} | {k['seconds']:.1f} | {result['time_ratio']:.2f}× |",
             f"| minor page faults | {d['page_faults']:,} | {k['page_faults']:,} | "
             f"{d['page_faults'] / max(k['page_faults'], 1):.0f}× |",
             f"| peak RSS MB | {d['peak_rss_mb']:.0f} | {k['peak_rss_mb']:.0f} | "
             f"{k['peak_rss_mb'] / d['peak_rss_mb']:.2f}× as much |"]
    return "\n".join(rows) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--out", help="write allocator.json and allocator.md into this folder")
    args = parser.parse_args()
    result = {name: in_fresh_process(_generate, (args.model, keep), f"the {name} run")
              for name, keep in (("default", False), ("keep_freed_memory", True))}
    result["time_ratio"] = result["default"]["seconds"] / result["keep_freed_memory"]["seconds"]
    table = markdown(result)
    if args.out:
        Path(args.out, "allocator.json").write_text(json.dumps(result, indent=1) + "\n")
        Path(args.out, "allocator.md").write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
