"""What keeping freed memory in the process (``fusionframes.keep_freed_memory``, applied by the CLI) is worth.

The default model generates the same fps "high" video (241 frames) twice, each in a fresh process: once with the
C library's default malloc settings, once with freed blocks kept. The table gives seconds per stage, minor page
faults and peak resident memory, and the ratios.

    python benchmarks/allocator.py [--model DIR] [--out benchmarks/results]
"""

import argparse
import json
import sys
from pathlib import Path

from fusionframes import DEFAULT_MODEL, keep_freed_memory
from fusionframes.bench import _run_level, in_fresh_process


def markdown(result: dict) -> str:
    d, k = result["default"], result["keep_freed_memory"]
    rows = ["| | C library defaults | freed memory kept | ratio |", "|---|---|---|---|"]
    for stage in d["seconds"]:
        rows.append(f"| {stage} s | {d['seconds'][stage]:.2f} | {k['seconds'][stage]:.2f} | "
                    f"{d['seconds'][stage] / max(k['seconds'][stage], 1e-9):.2f}× |")
    rows += [f"| whole generation s | {d['total_seconds']:.1f} | {k['total_seconds']:.1f} | "
             f"{result['time_ratio']:.2f}× |",
             f"| minor page faults | {d['page_faults_per_run']:,} | {k['page_faults_per_run']:,} | "
             f"{d['page_faults_per_run'] / max(k['page_faults_per_run'], 1):.0f}× |",
             f"| peak RSS MB | {d['peak_rss_mb']:.0f} | {k['peak_rss_mb']:.0f} | "
             f"{k['peak_rss_mb'] / d['peak_rss_mb']:.2f}× as much |"]
    return "\n".join(rows) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--out", help="write allocator.json and allocator.md into this folder")
    args = parser.parse_args()
    if not keep_freed_memory():
        sys.exit("this C library has no mallopt: nothing to compare")
    result = {name: in_fresh_process(_run_level, (args.model, "high", "cpu", None, 1), f"the {name} run", keep)
              for name, keep in (("default", False), ("keep_freed_memory", True))}
    result["time_ratio"] = result["default"]["total_seconds"] / result["keep_freed_memory"]["total_seconds"]
    table = markdown(result)
    if args.out:
        Path(args.out, "allocator.json").write_text(json.dumps(result, indent=1) + "\n")
        Path(args.out, "allocator.md").write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
