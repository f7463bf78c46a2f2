"""Side-by-side measurements behind ``fusionframes bench``: every ratio comes from one run on one machine.

Method: a stage's time is the median over ``repeats`` timed U-Net calls (after one untimed call) times its step
count, with guidance as the pipeline runs it (a doubled batch where the guidance weight is non-zero); inputs are
drawn before timing. FLOPs are counted once per call with ``torch.utils.flop_counter.FlopCounterMode``
(matmuls, convolutions, attention — counted through the math attention kernel, since the fused CPU kernel is
invisible to the counter; timing uses the normal kernels). Utilisation sets a call's best time against the best
time of a large matmul measured in the same run: on a shared machine noise only ever adds time, and medians of
the two drift apart with it.
"""

import math
import multiprocessing
import queue
import re
import statistics
import sys
import time
from typing import Callable, Optional

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from . import allocator
from .errors import FusionFramesError
from .models import MaskedInterpolationUNet
from .models.interpolation import masked_windows
from .pipeline import KV1_DEFAULTS, PASSES, FusionFramesPipeline


def _synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # CUDA calls return at launch: time the work, not the launches


def measure(call: Callable[[], object], repeats: int) -> dict:
    """Median and best seconds of ``call`` over ``repeats`` runs after a warm-up, and the FLOPs of one run (in all
    and per operator)."""
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
            call()
        times = []
        for _ in range(repeats):
            _synchronize()
            start = time.perf_counter()
            call()
            _synchronize()
            times.append(time.perf_counter() - start)
    return dict(seconds=statistics.median(times), best_seconds=min(times), flops=counter.get_total_flops(),
                flops_by_op={str(op): n for op, n in counter.get_flop_counts().get("Global", {}).items()})


PROMPT = "a red circle moving to the right"


def guidance_batch(pipe: FusionFramesPipeline) -> int:
    return 2 if pipe.defaults["guidance_scale"] else 1


def keyframe_call(pipe: FusionFramesPipeline, frames: int, batch: int, size: Optional[int] = None) -> Callable:
    """One keyframe U-Net call on random latents (the values do not change time or FLOPs): ``batch`` videos of
    ``frames`` frames at ``size``² (default: the pipeline's size), conditioned on the benchmarks' prompt."""
    d, unet = pipe.defaults, pipe.keyframe_unet
    h, w = pipe.valid_size(*((size, size) if size else (d["height"], d["width"])))
    context, mask = pipe.encode_prompt([PROMPT])[0]
    x = torch.randn(batch, unet.config.out_channels, frames, h, w).to(unet.device, unet.dtype)
    context, mask = context[None].expand(batch, -1, -1).to(unet.dtype), mask[None].expand(batch, -1)
    return lambda: unet(x, 500, context, mask)


def masked_twin(pipe: FusionFramesPipeline) -> MaskedInterpolationUNet:
    """The masked-interpolation baseline at the width and depth of ``pipe``'s interpolation U-Net (random weights:
    time and FLOPs do not depend on the values)."""
    unet = pipe.interpolation_unet
    kwargs = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    c = unet.latent_channels
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MaskedInterpolationUNet(**{**kwargs, "num_channels": 2 * c + 1, "out_channels": c})
    return model.to(device=unet.device, dtype=unet.dtype).eval()


def bench_interpolation(pipe: FusionFramesPipeline, num_keyframes: Optional[int] = None, repeats: int = 3) -> dict:
    """Group interpolation (ours) against masked frame interpolation for the same keyframes and output frames:
    T → 4T−3 (s = 3) → 16T−15 (s = 1), with the pipeline's step counts; the keyframe stage and decoding are
    shared, so they enter both whole-pipeline times as measured once (text encoding, milliseconds, is left out)."""
    if isinstance(pipe.interpolation_unet, MaskedInterpolationUNet):
        raise FusionFramesError("bench interpolation compares a group interpolation model with its masked twin; "
                                "this pipeline's interpolation model is already the masked baseline")
    d = pipe.defaults
    t = num_keyframes or d["num_keyframes"]
    h, w = pipe.valid_size(d["height"], d["width"])
    c = pipe.interpolation_unet.latent_channels
    masked = masked_twin(pipe)
    cfg = 2 if d["interpolation_guidance_scale"] else 1
    g = torch.Generator().manual_seed(0)
    device, dtype = pipe.device, pipe.interpolation_unet.dtype
    rand = lambda *shape: torch.randn(*shape, generator=g).to(device, dtype)  # noqa: E731

    stages, frames = {}, t
    for skip in PASSES["high"]:
        groups = frames - 1
        keyframes, sample = rand(cfg, c, frames, h, w), rand(cfg, c, 3 * groups, h, w)
        ours = measure(lambda: pipe.interpolation_unet(sample, 500, keyframes, skip), repeats)
        condition, mask = masked_windows(keyframes)
        windows = rand(*condition.shape)
        theirs = measure(lambda: masked(windows, 500, condition, mask, skip), repeats)
        stages[f"interpolation s={skip}"] = dict(frames_in=frames, frames_out=4 * frames - 3, ours=ours,
                                                 masked=theirs)
        frames = 4 * frames - 3

    keyframes_stage = measure(keyframe_call(pipe, t, guidance_batch(pipe)), repeats)
    latents = torch.randn(1, c, frames, h, w, generator=g)
    decode = measure(lambda: pipe.decode(latents), repeats)

    def whole(steps, isteps):
        """Stage and pipeline seconds at these step counts, from the per-call times."""
        ours_s, masked_s = (sum(s[who]["seconds"] for s in stages.values()) * isteps for who in ("ours", "masked"))
        shared = keyframes_stage["seconds"] * steps + decode["seconds"]
        return dict(ours_interpolation=ours_s, masked_interpolation=masked_s, ours_pipeline=shared + ours_s,
                    masked_pipeline=shared + masked_s)

    steps, isteps = d["num_inference_steps"], d["interpolation_steps"]
    seconds = whole(steps, isteps)
    official = KV1_DEFAULTS["num_inference_steps"], KV1_DEFAULTS["interpolation_steps"]
    at_official = whole(*official)
    flops = lambda who: sum(s[who]["flops"] for s in stages.values())  # noqa: E731
    return dict(
        num_keyframes=t, latent_size=[h, w], steps=steps, interpolation_steps=isteps, guidance_batch=cfg,
        stages=stages, keyframes_per_step=keyframes_stage, decode=decode,
        seconds=seconds,
        flops_ratio_interpolation=flops("masked") / flops("ours"),
        time_ratio_interpolation=seconds["masked_interpolation"] / seconds["ours_interpolation"],
        time_ratio_pipeline=seconds["masked_pipeline"] / seconds["ours_pipeline"],
        # KV 1.0's step counts (the setting of the paper's Fig. 7): the same calls, re-weighted.
        at_official_steps=dict(steps=official[0], interpolation_steps=official[1], **at_official,
                               time_ratio_pipeline=at_official["masked_pipeline"] / at_official["ours_pipeline"]),
        parameters=dict(ours=sum(p.numel() for p in pipe.interpolation_unet.parameters()),
                        masked=sum(p.numel() for p in masked.parameters())))


def interpolation_markdown(result: dict) -> str:
    rows = ["| stage | frames | FLOPs per call, ours | masked | ratio | s per call, ours | masked | ratio |",
            "|---|---|---|---|---|---|---|---|"]
    for name, s in result["stages"].items():
        o, m = s["ours"], s["masked"]
        rows.append(f"| {name} | {s['frames_in']} → {s['frames_out']} | {o['flops'] / 1e9:.1f} G | "
                    f"{m['flops'] / 1e9:.1f} G | {m['flops'] / o['flops']:.2f}× | {o['seconds']:.3f} | "
                    f"{m['seconds']:.3f} | {m['seconds'] / o['seconds']:.2f}× |")
    sec = result["seconds"]
    rows.append(f"| interpolation ({result['interpolation_steps']} steps per pass) | | | | "
                f"{result['flops_ratio_interpolation']:.2f}× | {sec['ours_interpolation']:.1f} s | "
                f"{sec['masked_interpolation']:.1f} s | {result['time_ratio_interpolation']:.2f}× |")
    rows.append(f"| whole pipeline (keyframes {result['steps']} steps + decoding shared) | | | | | "
                f"{sec['ours_pipeline']:.1f} s | {sec['masked_pipeline']:.1f} s | "
                f"{result['time_ratio_pipeline']:.2f}× |")
    official = result["at_official_steps"]
    rows.append(f"| whole pipeline at KV 1.0's {official['steps']} + {official['interpolation_steps']} steps per "
                f"pass | | | | | {official['ours_pipeline']:.1f} s | {official['masked_pipeline']:.1f} s | "
                f"{official['time_ratio_pipeline']:.2f}× |")
    return "\n".join(rows) + "\n"


def peak_memory_mb() -> Optional[float]:
    """This process's peak resident memory: VmHWM (Linux; per address space, so a spawned child starts afresh),
    else ru_maxrss (kilobytes on Linux, bytes on macOS); None where neither exists."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def in_fresh_process(target: Callable, args: tuple, what: str, keep_memory: Optional[bool] = None) -> dict:
    """Run ``target(*args, queue)`` in a spawned process (its peak memory is then its own) and return the dict it
    puts on the queue; a child that reports an error or dies (out of memory) becomes a FusionFramesError naming
    ``what`` instead of a wait that never ends. The child keeps freed memory if ``keep_memory`` says so (default:
    if this process does)."""
    mp = multiprocessing.get_context("spawn")
    results = mp.Queue()
    keep_memory = allocator.enabled if keep_memory is None else keep_memory
    process = mp.Process(target=_child, args=(keep_memory, target, *args, results))
    process.start()
    while True:
        try:
            result = results.get(timeout=5)
            break
        except queue.Empty:
            if not process.is_alive():
                raise FusionFramesError(f"{what} died (exit code {process.exitcode}); out of memory?") from None
    process.join()
    if "error" in result:
        raise FusionFramesError(f"{what} failed: {result['error']}")
    return result


def _child(keep_memory: bool, target: Callable, *args) -> None:
    if keep_memory:  # a spawned child starts with the C library's defaults: measure what the parent runs
        allocator.keep_freed_memory()
    target(*args)


def _minor_faults() -> Optional[int]:
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _run_level(model, fps: str, device: str, dtype, repeats: int, queue) -> None:
    """Child process: load, warm up, generate ``repeats`` times at ``fps``; report median stage seconds and peaks."""
    try:
        pipe = FusionFramesPipeline.from_pretrained(model, device=device, dtype=dtype)
        pipe.progress = False
        pipe("warm-up", num_keyframes=2, fps="medium", num_inference_steps=1, interpolation_steps=1)
        faults = _minor_faults()
        runs = [pipe(PROMPT, fps=fps, output_type="np",
                     generator=torch.Generator(device).manual_seed(0)) for _ in range(repeats)]
        seconds = {k: statistics.median(r.timings[k] for r in runs) for k in runs[0].timings}
        accelerator = torch.cuda.max_memory_allocated() / 2**20 if torch.device(device).type == "cuda" else None
        queue.put(dict(frames=int(runs[0].frames.shape[1]), seconds=seconds, total_seconds=sum(seconds.values()),
                       peak_rss_mb=peak_memory_mb(), peak_accelerator_mb=accelerator,
                       page_faults_per_run=(_minor_faults() - faults) // repeats if faults is not None else None))
    except BaseException as error:  # reported to the parent, which would otherwise wait forever
        queue.put(dict(error=f"{type(error).__name__}: {error}"))


def bench_pipeline(model, device: str = "cpu", dtype=None, repeats: int = 1) -> dict:
    """Seconds per stage (median of ``repeats`` after a warm-up) and peak memory at fps low / medium / high, each
    level in a fresh process so that the peak is its own; and the one-stage alternative: the keyframe U-Net
    denoising all 16T−15 frames directly (per-step time × steps + the same decoding)."""
    pipe = FusionFramesPipeline.from_pretrained(model, device=device, dtype=dtype)  # bad folders fail here
    levels = {fps: in_fresh_process(_run_level, (str(model), fps, device, dtype, repeats), f"the fps {fps!r} run")
              for fps in PASSES}
    d = pipe.defaults
    frames = levels["high"]["frames"]
    one_stage = measure(keyframe_call(pipe, frames, guidance_batch(pipe)), repeats)
    one_stage_seconds = one_stage["seconds"] * d["num_inference_steps"] + levels["high"]["seconds"]["decode"]
    return dict(levels=levels, settings={k: d[k] for k in ("num_keyframes", "height", "width", "sampler",
                                                            "num_inference_steps", "interpolation_steps")},
                device=str(device), repeats=repeats,
                one_stage=dict(frames=frames, seconds_per_step=one_stage["seconds"], seconds=one_stage_seconds),
                one_stage_ratio=one_stage_seconds / levels["high"]["total_seconds"])


def pipeline_markdown(result: dict) -> str:
    stages = list(result["levels"]["high"]["seconds"])
    rows = ["| fps | frames | " + " | ".join(stages) + " | total s | peak RSS MB |",
            "|---" * (len(stages) + 4) + "|"]
    for fps, level in result["levels"].items():
        cells = [f"{level['seconds'][s]:.2f}" if s in level["seconds"] else "—" for s in stages]
        peak = "—" if level["peak_rss_mb"] is None else f"{level['peak_rss_mb']:.0f}"
        rows.append(f"| {fps} | {level['frames']} | " + " | ".join(cells)
                    + f" | {level['total_seconds']:.1f} | {peak} |")
    one = result["one_stage"]
    rows.append(f"\nOne-stage alternative ({one['frames']} frames through the keyframe U-Net): "
                f"{one['seconds']:.1f} s = {result['one_stage_ratio']:.1f}× the two-stage pipeline at fps high.")
    return "\n".join(rows) + "\n"


def matmul_peak(size: int = 2048, repeats: int = 10, dtype=torch.float32, device="cpu") -> float:
    """The machine's best achieved FLOP/s on a large square matmul (the practical peak the U-Net is measured
    against; best of ``repeats``, since on a shared machine noise only ever adds time)."""
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    return 2 * size ** 3 / measure(lambda: a @ b, repeats)["best_seconds"]


def _family(op_name: str) -> Optional[str]:
    """The kernel family of an operator, named as the profiler (``aten::mm``) or the FLOP counter (``aten.mm``).

    Attention is a matmul here: its FLOPs are counted through the math kernel's matmuls (see the module note)."""
    parts = op_name.replace("::", ".").split(".")
    bare = parts[1] if len(parts) > 1 else parts[0]
    if re.search(r"(^|_)conv(olution|\dd|_|$)", bare):  # conv2d, _convolution, mkldnn_…, slow_conv3d_forward
        return "convolution"
    if "scaled_dot_product" in bare or bare in ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear"):
        return "matmul"
    return None


def utilisation(call: Callable[[], object], peak: float, device: torch.device, repeats: int = 3,
                top: int = 12) -> dict:
    """Achieved FLOP/s of ``call`` against ``peak``, split by kernel family (convolutions; matmuls with attention:
    their FLOPs over the time the profiler gives their kernels), and the profile's most expensive operators."""
    from torch.profiler import ProfilerActivity, profile

    result = measure(call, repeats)
    families = ("convolution", "matmul")
    flops = dict.fromkeys(families, 0)
    for op, count in result["flops_by_op"].items():
        if _family(op):
            flops[_family(op)] += count
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.no_grad(), profile(activities=activities) as prof:
        call()
    events = prof.key_averages()
    cost = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)  # noqa: E731
    total = sum(cost(e) for e in events)
    spent = dict.fromkeys(families, 0.0)
    for e in events:
        if _family(e.key):
            spent[_family(e.key)] += cost(e)
    # A family's kernels run at its FLOPs over its share of the call's time: what they reach while the rest
    # (normalisation, activations, copies, Python) takes the remaining time. CPU only: on a GPU the profile lists
    # kernels under their own names beside the operators that launch them.
    kernels = None if cuda else {
        family: dict(flops=flops[family], share_of_time=spent[family] / total,
                     utilisation=(flops[family] / (result["best_seconds"] * spent[family] / total) / peak
                                  if spent[family] else None))
        for family in families}
    ops = sorted(events, key=cost, reverse=True)[:top]
    # Best against best: the call's and the peak's fastest runs, both as free of the machine's neighbours as seen.
    achieved = result["flops"] / result["best_seconds"]
    return dict(flops=result["flops"], seconds=result["best_seconds"], achieved=achieved, matmul_peak=peak,
                utilisation=achieved / peak, kernels=kernels,
                threads=torch.get_num_threads(),
                top_ops=[dict(op=e.key, share=cost(e) / total, calls=e.count) for e in ops])


def bench_utilisation(pipe: FusionFramesPipeline, repeats: int = 3, top: int = 12) -> dict:
    """One keyframe U-Net call of ``pipe`` (default keyframes and size, guidance batch) against the matmul peak
    measured in the same run."""
    unet, cfg, frames = pipe.keyframe_unet, guidance_batch(pipe), pipe.defaults["num_keyframes"]
    call = keyframe_call(pipe, frames, cfg)
    peak = matmul_peak(dtype=unet.dtype, device=unet.device)
    return dict(model="default keyframe U-Net", dtype=str(unet.dtype).replace("torch.", ""),
                shape=[cfg, unet.config.out_channels, frames, *pipe.valid_size(pipe.defaults["height"],
                                                                               pipe.defaults["width"])],
                **utilisation(call, peak, unet.device, repeats, top))


def bench_utilisation_full_size(device="cpu", dtype=None, frames: int = 15, batch: int = 2, latent: int = 16,
                                repeats: int = 2, top: int = 12) -> dict:
    """The same measurement for the full-size KV 1.0 keyframe U-Net (random weights; 8.3 GB in bfloat16, the
    default) as KV 1.0 calls it — 15 keyframes, guidance batch 2, 16 text tokens — at ``latent``² (16² = 128²
    frames by default): how the architecture at its real width uses the machine."""
    from .models.presets import build_preset

    dtype = dtype or torch.bfloat16
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = build_preset("kv1-keyframe-unet", device=device, dtype=dtype).eval()
        x = torch.randn(batch, 4, frames, latent, latent, device=device, dtype=dtype)
        context = torch.randn(batch, 16, unet.config.context_dim, device=device, dtype=dtype)
    mask = torch.ones(batch, 16, dtype=torch.bool, device=device)
    peak = matmul_peak(dtype=dtype, device=device)
    return dict(model="full-size KV 1.0 keyframe U-Net (random weights)", dtype=str(dtype).replace("torch.", ""),
                shape=list(x.shape), **utilisation(lambda: unet(x, 500, context, mask), peak, x.device, repeats, top))


def utilisation_markdown(result: dict) -> str:
    rows = [f"{result['model']}, input {tuple(result['shape'])}: {result['flops'] / 1e9:.1f} GFLOP in "
            f"{result['seconds']:.3f} s = {result['achieved'] / 1e9:.1f} GFLOP/s; matmul peak "
            f"{result['matmul_peak'] / 1e9:.1f} GFLOP/s ({result['dtype']}, {result['threads']} threads): "
            f"utilisation {100 * result['utilisation']:.0f}%."]
    if result["kernels"]:
        rows += ["", "| kernel family | share of FLOPs | share of time | its kernels' utilisation |",
                 "|---|---|---|---|"]
        for family, k in result["kernels"].items():
            rows.append(f"| {family} | {100 * k['flops'] / result['flops']:.1f}% | {100 * k['share_of_time']:.1f}% | "
                        + (f"{100 * k['utilisation']:.0f}% |" if k["utilisation"] is not None else "— |"))
    rows += ["", "| operator | share of time | calls |", "|---|---|---|"]
    rows += [f"| {op['op']} | {100 * op['share']:.1f}% | {op['calls']} |" for op in result["top_ops"]]
    return "\n".join(rows) + "\n"


def _scaling_point(model, num_keyframes: int, size: int, batch: int, repeats: int, queue) -> None:
    """Child process: one keyframe U-Net call at (T, size, batch); its time and the memory it adds at peak."""
    try:
        call = keyframe_call(FusionFramesPipeline.from_pretrained(model), num_keyframes, batch, size)
        before = peak_memory_mb()
        result = measure(call, repeats)
        queue.put(dict(num_keyframes=num_keyframes, size=size, batch=batch, seconds=result["seconds"],
                       flops=result["flops"], memory_mb=peak_memory_mb() - before))
    except BaseException as error:
        queue.put(dict(error=f"{type(error).__name__}: {error}"))


SCALING = {"num_keyframes": (4, 8, 16, 32), "size": (64, 128, 256), "batch": (1, 2, 4)}


def bench_scaling(model, repeats: int = 2, base=(16, 128, 1), sweeps: Optional[dict] = None) -> dict:
    """Time and added peak memory of one keyframe U-Net call against keyframes, resolution and batch (one varied
    at a time from ``base`` = (T, side, batch)), each point in a fresh process; with the log-log slope between the
    smallest and largest point of each sweep (1 = linear); ``sweeps`` {axis: values} defaults to ``SCALING``."""
    FusionFramesPipeline.from_pretrained(model)  # bad folders fail here
    result = {}
    for axis, values in (sweeps or SCALING).items():
        points = []
        for value in values:
            t, size, batch = base
            t, size, batch = {"num_keyframes": (value, size, batch), "size": (t, value, batch),
                              "batch": (t, size, value)}[axis]
            points.append(in_fresh_process(_scaling_point, (str(model), t, size, batch, repeats),
                                           f"scaling point {axis}={value}"))
        x0, x1 = math.log(points[0][axis]), math.log(points[-1][axis])
        # Work grows with frames × pixels × batch; an axis's own exponent is relative to that unit (pixels ∝ side²).
        unit = 2 if axis == "size" else 1
        slope = lambda key: (math.log(points[-1][key]) - math.log(points[0][key])) / (x1 - x0) / unit  # noqa
        result[axis] = dict(points=points, time_exponent=slope("seconds"), flops_exponent=slope("flops"),
                            memory_exponent=slope("memory_mb") if min(p["memory_mb"] for p in points) > 0 else None)
    return dict(base=dict(zip(("num_keyframes", "size", "batch"), base)), sweeps=result)


def plot_scaling(result: dict, png) -> None:
    """One log-log panel per axis: seconds (blue) and added memory (orange), each normalised to its first point."""
    from PIL import Image, ImageDraw

    panel, pad = 300, 40
    image = Image.new("RGB", (panel * len(result["sweeps"]), panel), "white")
    draw = ImageDraw.Draw(image)
    for i, (axis, sweep) in enumerate(result["sweeps"].items()):
        left, right, top, bottom = i * panel + pad, (i + 1) * panel - 10, 20, panel - pad
        draw.rectangle([left, top, right, bottom], outline="black")
        xs = [math.log(p[axis]) for p in sweep["points"]]
        series = {(40, 90, 200): [p["seconds"] for p in sweep["points"]],
                  (230, 130, 20): [max(p["memory_mb"], 1e-3) for p in sweep["points"]]}
        ys = [math.log(v / vals[0]) for vals in series.values() for v in vals]
        lo, hi = min(ys + [0.0]), max(ys + [0.0]) or 1.0
        px = lambda v: left + (v - xs[0]) / (xs[-1] - xs[0]) * (right - left)  # noqa: E731
        py = lambda v: bottom - (v - lo) / (hi - lo) * (bottom - top)  # noqa: E731
        for colour, vals in series.items():
            draw.line([(px(x), py(math.log(v / vals[0]))) for x, v in zip(xs, vals)], fill=colour, width=2)
        draw.text((left, bottom + 6), f"{axis}: {sweep['points'][0][axis]} .. {sweep['points'][-1][axis]} (log)",
                  fill="black")
        draw.text((left + 4, top + 4), f"time ×{math.exp(hi):.3g} max", fill=(40, 90, 200))
    image.save(png)


def scaling_markdown(result: dict) -> str:
    rows = ["| axis | value | s per call | GFLOP | added peak MB |", "|---|---|---|---|---|"]
    for axis, sweep in result["sweeps"].items():
        for p in sweep["points"]:
            rows.append(f"| {axis} | {p[axis]} | {p['seconds']:.3f} | {p['flops'] / 1e9:.1f} | "
                        f"{p['memory_mb']:.0f} |")
    rows += ["", "| axis | time exponent | FLOP exponent | memory exponent |", "|---|---|---|---|"]
    for axis, sweep in result["sweeps"].items():
        mem = "—" if sweep["memory_exponent"] is None else f"{sweep['memory_exponent']:.2f}"
        rows.append(f"| {axis} | {sweep['time_exponent']:.2f} | {sweep['flops_exponent']:.2f} | {mem} |")
    return "\n".join(rows) + "\n"


# The text encoder of the official weights is Flan-UL2's encoder half; its size from its public config (d_model 4096,
# 32 layers, d_ff 16384, 16 heads × 256, vocabulary 32128), counted as T5EncoderModel builds it.
FLAN_UL2_ENCODER = dict(vocab_size=32128, d_model=4096, d_kv=256, d_ff=16384, num_layers=32, num_heads=16,
                        feed_forward_proj="gated-silu", tie_word_embeddings=False)
FULL_SIZE_PARTS = {"keyframe U-Net": "kv1-keyframe-unet", "interpolation U-Net": "kv1-interpolation-unet",
                   "MoVQ": "kv1-movq"}
BYTES = {"float32": 4, "bfloat16": 2}


def full_size_weights() -> dict:
    """Parameters and weight bytes per dtype of every full-size KV 1.0 component (built on the meta device)."""
    from transformers import T5Config, T5EncoderModel

    from .models.presets import preset_parameters

    counts = {part: preset_parameters(preset) for part, preset in FULL_SIZE_PARTS.items()}
    with torch.device("meta"):
        encoder = T5EncoderModel(T5Config(**FLAN_UL2_ENCODER))
    counts = {"text encoder (Flan-UL2 encoder)": sum(p.numel() for p in encoder.parameters()), **counts}
    return {part: dict(parameters=n, **{f"{dtype}_gb": n * size / 1e9 for dtype, size in BYTES.items()})
            for part, n in counts.items()}


def _activation_point(preset: str, latent: int, frames: int, queue) -> None:
    """Child process: a full-size U-Net in bfloat16 with random weights; the memory one sampling step adds (a
    guidance batch of 2) at ``latent``² latents and ``frames`` frames (keyframes, or output frames for the
    interpolation model, i.e. 3 per group)."""
    try:
        from .models.presets import build_preset

        # Cast on the meta device first: allocating float32 and then casting would need 1.5× the weights.
        model = build_preset(preset, device="meta").to(torch.bfloat16).to_empty(device="cpu").eval()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.02)
        weights = peak_memory_mb()
        x = torch.randn(2, 4, frames, latent, latent, dtype=torch.bfloat16)
        with torch.no_grad():
            if preset == "kv1-keyframe-unet":
                model(x, 500, torch.randn(2, 16, 4096, dtype=torch.bfloat16))
            else:
                groups = frames // 3
                model(x, 500, torch.randn(2, 4, groups + 1, latent, latent, dtype=torch.bfloat16), 3)
        queue.put(dict(preset=preset, latent=latent, frames=frames, weights_rss_mb=weights,
                       added_mb=peak_memory_mb() - weights))
    except BaseException as error:
        queue.put(dict(error=f"{type(error).__name__}: {error}"))


def bench_memory(measure_activations: bool = False, latents=(8, 16), keyframes: int = 15) -> dict:
    """Weight bytes of the full-size KV 1.0 pipeline, and (``measure_activations``) the memory one keyframe and
    one interpolation step add, measured with the real full-size modules at small latent sizes (each in a fresh
    process) and extrapolated linearly in latent pixels to 64² (= 512² frames): the attention kernels keep no
    score matrices, so activations grow with pixels × frames."""
    result = dict(weights=full_size_weights())
    if not measure_activations:
        return result
    steps = {}
    # The largest interpolation step is the second pass: 4T−3 = 57 frames in, 56 groups, 168 new frames.
    for preset, frames in (("kv1-keyframe-unet", keyframes), ("kv1-interpolation-unet", 3 * (4 * keyframes - 4))):
        points = [in_fresh_process(_activation_point, (preset, latent, frames), f"{preset} at {latent}² latents")
                  for latent in latents]
        a, b = points[0], points[-1]
        per_pixel = (b["added_mb"] - a["added_mb"]) / (b["latent"] ** 2 - a["latent"] ** 2)
        extrapolated = a["added_mb"] + per_pixel * (64 ** 2 - a["latent"] ** 2)
        steps[preset] = dict(points=points, frames=frames, activations_at_512_gb=extrapolated / 1e3)
    result["steps"] = steps
    weights = {FULL_SIZE_PARTS[k]: v["bfloat16_gb"] for k, v in result["weights"].items() if k in FULL_SIZE_PARTS}
    result["peak_with_offload_bf16_gb"] = max(
        [v["bfloat16_gb"] for v in result["weights"].values()]
        + [weights[p] + s["activations_at_512_gb"] for p, s in steps.items()])
    result["fits_24_gb"] = result["peak_with_offload_bf16_gb"] < 24
    return result


def memory_markdown(result: dict) -> str:
    rows = ["| component | parameters | float32 GB | bfloat16 GB |", "|---|---:|---:|---:|"]
    rows += [f"| {part} | {w['parameters']:,} | {w['float32_gb']:.2f} | {w['bfloat16_gb']:.2f} |"
             for part, w in result["weights"].items()]
    if "steps" in result:
        rows += ["", "| step (bf16, guidance batch 2) | frames | added MB at measured latents | extrapolated to 64² "
                     "latents (512²) |", "|---|---:|---|---:|"]
        for preset, step in result["steps"].items():
            measured = ", ".join(f"{p['latent']}²: {p['added_mb']:.0f}" for p in step["points"])
            rows.append(f"| {preset} | {step['frames']} | {measured} | {step['activations_at_512_gb']:.1f} GB |")
        rows.append(f"\nLargest resident set with model CPU offload (bf16): "
                    f"{result['peak_with_offload_bf16_gb']:.1f} GB — "
                    f"{'within' if result['fits_24_gb'] else 'over'} 24 GB.")
    return "\n".join(rows) + "\n"
