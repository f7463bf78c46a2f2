"""Peak memory of `fusionframes convert-official` on a full-size, official-layout checkpoint.

Writes a synthetic checkpoint with every key and shape of the official manifest (uninitialised values: the point
is memory, not numbers), converts it in a child process, and samples the child's anonymous (RssAnon) and
file-backed (RssFile) resident memory. File-backed pages are the memory-mapped checkpoint: the kernel can drop
them at any time, so anonymous memory is what the conversion really costs.

    python benchmarks/convert_memory.py --component interpolation-unet --workdir /tmp/convert-bench

Needs about twice the checkpoint size in free disk (15.5 GB for interpolation-unet, 16.6 GB for keyframe-unet).
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

MANIFESTS = Path(__file__).resolve().parents[1] / "tests" / "reference" / "manifests"
FILES = {"keyframe-unet": "kv1_keyframe_unet.tsv", "interpolation-unet": "kv1_interpolation_unet.tsv"}


def synthetic_checkpoint(component: str, manifests: Path, path: Path) -> int:
    rows = [line.rstrip("\n").split("\t") for line in (manifests / FILES[component]).open()][1:]
    # torch.empty maps fresh zero pages: writing them out costs disk, not RAM.
    state = {key: torch.empty([int(d) for d in shape.split("x")]) for key, shape in rows}
    checkpoint = {"unet": state, "null_embedding": torch.zeros(4096)}
    if component == "keyframe-unet":
        checkpoint["projections"] = {"t5.0.weight": torch.empty(4096, 4096), "t5.1.weight": torch.ones(4096),
                                     "t5.1.bias": torch.zeros(4096)}
    torch.save(checkpoint, path)
    return path.stat().st_size


def rss(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--component", choices=sorted(FILES), default="interpolation-unet")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/convert-bench"))
    parser.add_argument("--manifests", type=Path, default=MANIFESTS)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    checkpoint, out = args.workdir / "official.pt", args.workdir / "converted"
    shutil.rmtree(out, ignore_errors=True)
    size = synthetic_checkpoint(args.component, args.manifests, checkpoint)

    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "fusionframes.cli", "convert-official", "--component",
                              args.component, str(checkpoint), str(out)])
    peak = {"RssAnon": 0, "RssFile": 0}
    while child.poll() is None:
        try:
            for key, value in rss(child.pid).items():
                peak[key] = max(peak[key], value)
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    if child.wait() != 0:
        sys.exit("conversion failed")
    result = {
        "component": args.component,
        "checkpoint_gb": round(size / 1e9, 2),
        "peak_anonymous_gb": round(peak["RssAnon"] / 1e9, 2),
        "peak_file_backed_gb": round(peak["RssFile"] / 1e9, 2),
        "anonymous_over_checkpoint": round(peak["RssAnon"] / size, 3),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result, indent=1))
    shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
