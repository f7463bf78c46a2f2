"""`fusionframes serve`: a Gradio page over the pipeline, one generation at a time.

The page is a thin skin over :class:`Studio`, which owns everything a public server must get right and which tests
drive without a browser: every input is checked on the server against :class:`Limits` (a page's own limits are
advice, an API client can send anything), admission is a bounded queue with a "busy" answer beyond it, results go to
server-chosen folders (no user-supplied path ever reaches the file system), and every failure reaches the user as a
message, never as a traceback.
"""

import html
import secrets
import shutil
import tempfile
import threading
import time
import traceback
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

from .errors import FusionFramesError
from .pipeline import FPS, PASSES
from .video_io import write_video

MAX_SEED = 2 ** 32 - 1
EXAMPLES = ["a red ball moving to the right", "a yellow star drifting toward the upper left",
            "a green square sliding down on a gray background", "a blue triangle staying still",
            "a purple disc heading left"]


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. Defaults keep a 2-core CPU answering within minutes."""
    max_prompt_chars: int = 300
    max_steps: int = 100
    max_interpolation_steps: int = 50
    max_guidance: float = 20.0
    sizes: Tuple[int, ...] = (64, 128, 192, 256)
    max_queue: int = 4  # requests waiting behind the one running
    keep_results: int = 20  # result folders kept on disk; older ones are deleted


@dataclass
class Request:
    prompt: str
    negative_prompt: str = ""
    seed: Optional[int] = None  # None: a random seed, reported with the result
    steps: int = 30
    interpolation_steps: int = 10
    guidance: float = 5.0
    fps: str = "high"
    size: int = 128


@dataclass
class Result:
    video: Path
    keyframes: List[Path]
    keyframes_zip: Path
    seed: int
    settings: dict = field(default_factory=dict)

    def describe(self) -> str:
        s = self.settings
        return (f"seed **{self.seed}** · {s['size']}×{s['size']} · fps {s['fps']} ({s['frames']} frames at "
                f"{s['frame_rate']:g} FPS) · {s['steps']} keyframe steps, {s['interpolation_steps']} interpolation "
                f"steps · guidance {s['guidance']:g}" + (f" · negative: “{s['negative_prompt']}”"
                                                           if s['negative_prompt'] else "")
                + f" · {s['seconds']:.1f} s")


class Busy(FusionFramesError):
    pass


def _integer(name: str, value, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise FusionFramesError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


def _makes(pipe, size: int) -> bool:
    try:
        pipe.valid_size(size, size)
    except FusionFramesError:
        return False
    return True


class Studio:
    """Checks, queues and runs requests against one pipeline; writes each result to its own folder."""

    def __init__(self, pipe, limits: Limits = Limits(), output_root=None):
        self.pipe, self.limits = pipe, limits
        self.sizes = tuple(s for s in limits.sizes if _makes(pipe, s))
        if not self.sizes:
            raise FusionFramesError(f"this model can make none of the sizes {limits.sizes}")
        self.default_size = min(self.sizes, key=lambda s: abs(s - pipe.defaults["height"]))
        self.output_root = Path(output_root or tempfile.mkdtemp(prefix="fusionframes-serve-"))
        self.output_root.mkdir(parents=True, exist_ok=True)
        self._gate = threading.Lock()  # guards the counters
        self._running = threading.Lock()  # one generation at a time
        self._admitted = 0

    def check(self, request: Request) -> Request:
        """The request with every field validated and normalised; FusionFramesError names the first bad one."""
        limits = self.limits
        if not isinstance(request.prompt, str) or not request.prompt.strip():
            raise FusionFramesError("write a prompt first (for example: a red ball moving to the right)")
        negative = request.negative_prompt or ""
        for name, text in (("prompt", request.prompt), ("negative prompt", negative)):
            if not isinstance(text, str) or len(text) > limits.max_prompt_chars:
                raise FusionFramesError(f"the {name} is too long: at most {limits.max_prompt_chars} characters, "
                                        f"got {len(text) if isinstance(text, str) else type(text).__name__}")
        seed = None if request.seed is None else _integer("seed", request.seed, 0, MAX_SEED)
        steps = _integer("steps", request.steps, 1, limits.max_steps)
        interpolation_steps = _integer("interpolation steps", request.interpolation_steps, 1,
                                       limits.max_interpolation_steps)
        guidance = request.guidance
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) \
                or not 0 <= guidance <= limits.max_guidance:
            raise FusionFramesError(f"guidance must be a number from 0 to {limits.max_guidance:g}, got {guidance!r}")
        if not isinstance(request.fps, str) or request.fps not in FPS:
            raise FusionFramesError(f"fps must be one of {', '.join(FPS)}, got {request.fps!r}")
        size = _integer("resolution", request.size, 1, max(self.sizes))
        if size not in self.sizes:
            raise FusionFramesError(f"resolution must be one of {', '.join(map(str, self.sizes))}, got {size}")
        return Request(request.prompt.strip(), negative.strip(), seed, steps, interpolation_steps, float(guidance),
                       request.fps, size)

    @contextmanager
    def admitted(self):
        """A place in the queue (the running request counts), or Busy when it is full."""
        with self._gate:
            if self._admitted > self.limits.max_queue:
                raise Busy(f"the server is busy: {self._admitted} generations are running or waiting (at most "
                           f"{self.limits.max_queue} may wait); try again in a minute")
            self._admitted += 1
        try:
            yield
        finally:
            with self._gate:
                self._admitted -= 1

    @property
    def waiting(self) -> int:
        return max(0, self._admitted - 1)

    def generate(self, request: Request, progress: Optional[Callable[[float, str], None]] = None) -> Result:
        """Check, wait for the pipeline, run; ``progress(fraction, description)`` per denoising step."""
        request = self.check(request)
        with self.admitted():
            if progress is not None and self._running.locked():
                progress(0.0, f"waiting: {self.waiting} request(s) in the queue")
            with self._running:
                return self._run(request, progress)

    def _run(self, request: Request, progress) -> Result:
        import torch

        seed = secrets.randbelow(MAX_SEED + 1) if request.seed is None else request.seed
        pipe, passes = self.pipe, PASSES[request.fps]
        total = request.steps + request.interpolation_steps * len(passes)
        done = {"steps": 0}

        def on_step(stage, step, timestep, latents):
            done["steps"] += 1
            if progress is not None:
                steps = request.steps if stage == "keyframes" else request.interpolation_steps
                progress(done["steps"] / (total + 1), f"{stage}: step {step + 1} of {steps}")

        start = time.perf_counter()
        out = pipe(request.prompt, negative_prompt=request.negative_prompt or None, height=request.size,
                   width=request.size, fps=request.fps, num_inference_steps=request.steps,
                   interpolation_steps=request.interpolation_steps, guidance_scale=request.guidance,
                   generator=torch.Generator(pipe.device).manual_seed(seed), output_type="latent",
                   callback_on_step_end=on_step)
        if progress is not None:
            progress((total + 0.5) / (total + 1), "decoding and writing the video")
        frames = (pipe.decode(out.frames)[0].permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        seconds = time.perf_counter() - start
        settings = dict(prompt=request.prompt, negative_prompt=request.negative_prompt, size=request.size,
                        fps=request.fps, frames=len(frames), frame_rate=out.fps, steps=request.steps,
                        interpolation_steps=request.interpolation_steps, guidance=request.guidance, seconds=seconds)
        return self._save(frames, seed, settings)

    def _save(self, frames: np.ndarray, seed: int, settings: dict) -> Result:
        from PIL import Image

        self._prune()
        folder = Path(tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-", dir=self.output_root))
        try:
            video = write_video(frames, folder / f"fusionframes-{seed}.mp4", fps=settings["frame_rate"],
                                metadata={"comment": f"seed {seed}", "title": settings["prompt"][:200]})
            keyframes = []
            # Each interpolation pass puts 3 frames between every pair: keyframes are every 4th, then every 16th.
            for i, frame in enumerate(frames[::4 ** len(PASSES[settings["fps"]])]):
                path = folder / f"keyframe_{i:02d}.png"
                Image.fromarray(frame).save(path)
                keyframes.append(path)
            archive = folder / f"fusionframes-{seed}-keyframes.zip"
            with zipfile.ZipFile(archive, "w") as zf:
                for path in keyframes:
                    zf.write(path, path.name)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Result(video, keyframes, archive, seed, settings)

    def _prune(self):
        folders = sorted((p for p in self.output_root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in folders[:max(0, len(folders) - self.limits.keep_results + 1)]:
            shutil.rmtree(old, ignore_errors=True)



def build_app(studio: Studio, examples: Optional[List[str]] = EXAMPLES, title: str = "FusionFrames"):
    """The page: prompt and settings on the left; video, keyframes, downloads and the settings used on the right."""
    import gradio as gr

    limits, defaults = studio.limits, studio.pipe.defaults

    def run(prompt, negative_prompt, seed, random_seed, steps, interpolation_steps, guidance, fps, size,
            progress=gr.Progress()):
        request = Request(prompt, negative_prompt, None if random_seed else seed, steps, interpolation_steps,
                          guidance, fps, size)
        try:
            result = studio.generate(request, lambda fraction, text: progress(fraction, desc=text))
        except FusionFramesError as error:
            raise gr.Error(html.escape(str(error)), print_exception=False) from None
        except Exception as error:  # a server fault: logged in full here, a message (no traceback) on the page
            traceback.print_exc()
            raise gr.Error(f"generation failed ({type(error).__name__}); the server log has the details",
                           print_exception=False) from None
        return (str(result.video), [str(p) for p in result.keyframes], result.describe(), result.seed,
                gr.DownloadButton(value=str(result.video), visible=True),
                gr.DownloadButton(value=str(result.keyframes_zip), visible=True))

    with gr.Blocks(title=title) as app:
        gr.Markdown(f"# {title}\nText → keyframes → interpolation (2 → 8 → 30 FPS) → MoVQ video decoder. "
                    f"One generation runs at a time; up to {limits.max_queue} more may wait.")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", max_length=limits.max_prompt_chars, lines=2, elem_id="prompt",
                                    placeholder="a red ball moving to the right")
                negative = gr.Textbox(label="Negative prompt", max_length=limits.max_prompt_chars,
                                      elem_id="negative-prompt")
                with gr.Row():
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED)
                    random_seed = gr.Checkbox(label="Random seed", value=False)
                fps = gr.Radio(list(FPS), value="high", label="Frame rate (low 2 FPS, medium 8, high 30)")
                size = gr.Dropdown(list(studio.sizes), value=studio.default_size, label="Resolution (square)")
                steps = gr.Slider(1, limits.max_steps, value=min(defaults["num_inference_steps"], limits.max_steps),
                                  step=1, label="Keyframe steps")
                interpolation_steps = gr.Slider(1, limits.max_interpolation_steps, step=1,
                                                value=min(defaults["interpolation_steps"],
                                                          limits.max_interpolation_steps),
                                                label="Interpolation steps")
                guidance = gr.Slider(0, limits.max_guidance, step=0.5, label="Guidance",
                                     value=min(defaults["guidance_scale"], limits.max_guidance))
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                if examples:
                    gr.Examples([[e] for e in examples], inputs=[prompt], label="Example prompts")
            with gr.Column():
                video = gr.Video(label="Video (H.264 MP4)", elem_id="video", autoplay=True, loop=True)
                gallery = gr.Gallery(label="Keyframes", columns=8, height="auto", elem_id="keyframes")
                info = gr.Markdown(elem_id="settings")
                with gr.Row():
                    download_video = gr.DownloadButton("Download MP4", visible=False)
                    download_keyframes = gr.DownloadButton("Download keyframes (zip)", visible=False)
        button.click(run, [prompt, negative, seed, random_seed, steps, interpolation_steps, guidance, fps, size],
                     [video, gallery, info, seed, download_video, download_keyframes],
                     concurrency_limit=None)  # every request reaches the Studio, which admits or answers busy
    return app


def serve(pipe, host: str = "127.0.0.1", port: int = 7860, limits: Limits = Limits(), block: bool = True):
    """Start the server; returns the Gradio app (already listening when ``block`` is False)."""
    studio = Studio(pipe, limits)
    app = build_app(studio)
    app.queue(max_size=4 * (limits.max_queue + 1))
    app.launch(server_name=host, server_port=port, allowed_paths=[str(studio.output_root)], show_error=True,
               prevent_thread_lock=not block, footer_links=[], quiet=not block)
    return app
