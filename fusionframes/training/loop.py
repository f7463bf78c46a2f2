"""One accelerate training loop for every stage: exact resume, atomic checkpoints, EMA, rank-0 logging.

Randomness of a micro-step (which samples, which timesteps and noise) is a pure function of
(seed, micro-step, process), and data order is a seeded permutation per epoch, so a resumed run sees exactly what
the uninterrupted run would have seen: N steps + kill + resume to 2N equals 2N steps in one go.
"""

import csv
import hashlib
import json
import os
import shutil
import signal
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from tqdm.auto import tqdm

from ..errors import FusionFramesError
from ..video_io import staged_folder, write_video
from .config import LR_SCHEDULES, RunConfig, config_dict, load_saved_config, saved_config
from .data import make_dataset
from .plot import plot_loss
from .tasks import TASKS

CHECKPOINT = "checkpoint"


def _seed(*parts) -> int:
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class SampleOrder:
    """Global sample order: a seeded permutation per epoch; micro-step m of process r takes its slice."""

    def __init__(self, length: int, seed: int, batch_size: int, world: int):
        self.length, self.seed, self.batch_size, self.world = length, seed, batch_size, world
        self._epoch, self._perm = None, None

    def indices(self, micro_step: int, rank: int) -> list:
        start = (micro_step * self.world + rank) * self.batch_size
        out = []
        for position in range(start, start + self.batch_size):
            epoch, offset = divmod(position, self.length)
            if epoch != self._epoch:
                self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.length)
            out.append(int(self._perm[offset]))
        return out


class Batches:
    """Each process's micro-batches: from a map-style data set through :class:`SampleOrder`, or from a shard
    stream (VideoShards) whose per-process positions are saved with each checkpoint."""

    def __init__(self, dataset, seed: int, batch_size: int, accelerator: Accelerator, positions=None):
        self.dataset, self.batch_size, self.accelerator = dataset, batch_size, accelerator
        rank, world = accelerator.process_index, accelerator.num_processes
        self.streaming = not hasattr(dataset, "__getitem__")
        if self.streaming:
            if getattr(dataset, "cache_refused", False):
                raise FusionFramesError("data.cache_dir is not supported with shards (a clip is drawn anew each epoch)")
            if positions is not None and len(positions) != world:
                raise FusionFramesError(f"this run was checkpointed with {len(positions)} processes; a shard stream "
                                        f"resumes only with the same number (got {world})")
            self.stream = dataset.stream(rank, world, **(positions[rank] if positions else {}))
        else:
            self.order = SampleOrder(len(dataset), seed, batch_size, world)

    def get(self, micro_step: int) -> dict:
        if self.streaming:
            items = [next(self.stream) for _ in range(self.batch_size)]
            return collate(items, [f"{i['labels']['url']}#{i['labels']['key']}@{i['labels']['start']}" for i in items])
        indices = self.order.indices(micro_step, self.accelerator.process_index)
        items = [self.dataset[i] for i in indices]
        return collate(items, [sample_key(item, i) for item, i in zip(items, indices)])

    def positions(self):
        """Every process's stream position (None for map-style data: the step is the position)."""
        return gather_object([self.stream.state]) if self.streaming else None

    def preview(self, size: int) -> dict:
        """The clips sample videos always show: the first of the data set (of its first shard, when streamed)."""
        if self.streaming:
            stream = self.dataset.stream(0, 1)
            items = [next(stream) for _ in range(size)]
            return collate(items, [f"preview{i}" for i in range(size)])
        indices = list(range(min(size, len(self.dataset))))
        return collate([self.dataset[i] for i in indices], indices)


def sample_key(item: dict, index: int) -> str:
    """A clip's identity for the encoder cache: its file and clip for video files (indices shift when files are
    added or fail), its index for the procedural domain (a pure function of seed and index)."""
    labels = item["labels"]
    if "path" in labels:
        return f"{labels['path']}@{labels['start']}/{item.get('skip_frames', 0)}"
    return str(index)


def collate(items: list, indices: list) -> dict:
    return {"frames": torch.stack([item["frames"] for item in items]), "index": indices,
            "caption": [item["caption"] for item in items],
            "motion": [item["labels"].get("motion") for item in items],
            "skip_frames": [item.get("skip_frames", 1) for item in items]}


def _write_checkpoint(accelerator: Accelerator, folder: Path, state: dict):
    """accelerate's full state (model, optimiser, scheduler, EMA, RNG of every process) written to a temporary
    folder and swapped in by rename, so a kill at any moment leaves the previous checkpoint intact."""
    staging, previous = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        (staging / "trainer_state.json").write_text(json.dumps(state))
        if folder.exists():
            os.replace(folder, previous)
        os.replace(staging, folder)
        shutil.rmtree(previous, ignore_errors=True)
    accelerator.wait_for_everyone()


def _recover_checkpoint(folder: Path):
    """A kill between the two renames of :func:`_write_checkpoint` leaves ``.tmp`` (complete) and/or ``.old``:
    put the newest complete one back in place."""
    if folder.exists():
        return
    for candidate in (folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")):
        if (candidate / "trainer_state.json").is_file():
            os.replace(candidate, folder)
            return


class StopRequest:
    """SIGTERM/SIGINT ask the loop to checkpoint and stop at the next step boundary."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def write_sample(task, batch, device, path: Path, seed: int):
    """A sample video of the model as it is now; its own generator, so training randomness is untouched."""
    was_training = task.training
    task.eval()
    with torch.random.fork_rng(devices=[]):
        frames, fps = task.sample({**batch, "frames": batch["frames"].to(device)},
                                  torch.Generator().manual_seed(seed))
    task.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(frames.numpy(), path, fps=fps)


def lr_factor(t, step: int) -> float:
    """The learning rate's factor after ``step`` optimiser steps: linear warm-up from 1/warmup_steps, then held
    (the paper's constant rate) or decayed to 0 at ``t.steps``. A decay settles the weights a constant rate
    keeps moving: at 5e-4 and batch 2, one keyframe checkpoint differed from the next by more than the extra
    steps gained (MODEL_CARD.md). Not diffusers' get_scheduler: its warm-up starts at 0, where this one's
    first step has always trained, and shipped runs must stay reproducible."""
    if step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    return LR_SCHEDULES[t.lr_schedule](min(1.0, (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)))


def train(config: RunConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train ``config.stage``; returns {"step", "status", "output"}. Outputs land in ``output_dir/final``."""
    t = config.train
    # Several processes without CUDA (torchrun on CPUs): accelerate needs cpu=True to pick the gloo backend.
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # The LR schedule counts optimiser steps (accelerate would otherwise step it once per process).
    accelerator = Accelerator(mixed_precision=t.mixed_precision, gradient_accumulation_steps=t.grad_accumulation,
                              cpu=multi_cpu, step_scheduler_with_optimizer=False)
    output = Path(config.output_dir)
    checkpoint = output / CHECKPOINT
    if accelerator.is_main_process:
        _recover_checkpoint(checkpoint)
    accelerator.wait_for_everyone()
    if resume and not (checkpoint / "trainer_state.json").is_file():
        raise FusionFramesError(f"--resume: no checkpoint in {checkpoint}")
    if not resume and checkpoint.exists():
        raise FusionFramesError(f"{output} already holds a run; pass --resume to continue it, or choose a new "
                                f"output_dir")
    set_seed(t.seed)  # the same initialisation in every process
    try:
        task = TASKS[config.stage](config)
    except TypeError as error:  # a misspelt model.unet / model.movq key reaches a constructor
        raise FusionFramesError(f"model configuration does not fit stage {config.stage}: {error}") from None
    if t.gradient_checkpointing:
        models = [m for m in task.modules() if getattr(m, "_supports_gradient_checkpointing", False)]
        if not models:
            raise FusionFramesError(f"train.gradient_checkpointing: stage {config.stage} has no U-Net to checkpoint")
        for model in models:
            model.enable_gradient_checkpointing()
    dataset = make_dataset(config)
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, t))
    task, optimizer, schedule = accelerator.prepare(task, optimizer, schedule)
    ema = None
    if t.ema_decay:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=t.ema_decay)
        accelerator.register_for_checkpointing(ema)

    state = {"step": 0}
    if resume:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    if resume and (output / "config.json").is_file():
        # Exact resume needs the same run: only the length and the reporting intervals may change.
        free = {"steps", "log_every", "checkpoint_every", "sample_every", "sample_size"}
        # Through load_config, so options added since the run started compare at their defaults.
        saved = json.loads(json.dumps(config_dict(load_saved_config(output / "config.json"))))
        now = json.loads(json.dumps(config_dict(config)))
        for section in (saved, now):
            section["train"] = {k: v for k, v in section["train"].items() if k not in free}
        if saved != now:
            changed = [f"{key}.{k}" for key in now if isinstance(now[key], dict)
                       for k in now[key] if saved.get(key, {}).get(k) != now[key][k]]
            raise FusionFramesError(f"--resume with a changed config ({', '.join(changed) or 'stage/output'}); only "
                                    f"train.steps and the logging/sampling intervals may change")
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        (output / "config.json").write_text(json.dumps(saved_config(config), indent=1))
    batches = Batches(dataset, config.data.seed, t.batch_size, accelerator, state.get("streams"))
    log_path = output / "log.csv"
    if resume and accelerator.is_main_process and log_path.exists():
        # Steps logged after the checkpoint are run again: drop their first-time rows.
        rows = log_path.read_text().splitlines()
        log_path.write_text("\n".join(rows[:1] + [r for r in rows[1:] if int(r.split(",")[0]) <= state["step"]])
                            + "\n")
    preview_batch = batches.preview(t.sample_size) if t.sample_every else None
    status = "finished"
    bar = tqdm(total=t.steps, initial=state["step"], desc=config.stage,
               disable=not (progress and accelerator.is_main_process))
    with StopRequest() as stop:
        while state["step"] < t.steps:
            started = time.perf_counter()
            for micro in range(t.grad_accumulation):
                m = state["step"] * t.grad_accumulation + micro
                batch = batches.get(m)
                batch["step"] = state["step"]
                batch["frames"] = batch["frames"].to(accelerator.device)
                generator = torch.Generator().manual_seed(_seed(t.seed, m, accelerator.process_index))
                with accelerator.accumulate(task):
                    loss = task(batch, generator)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and t.max_grad_norm:
                        accelerator.clip_grad_norm_(params, t.max_grad_norm)
                    optimizer.step()
                    if accelerator.sync_gradients:
                        schedule.step()
                    optimizer.zero_grad()
            state["step"] += 1
            if ema is not None:
                ema.step(params)
            # Every process learns of a stop signal received by any, so all checkpoint and stop together.
            shared = accelerator.gather(torch.stack([loss.detach().float(),
                                                     torch.tensor(float(stop.signal is not None), device=loss.device)]
                                                    ).reshape(1, 2))
            mean_loss = shared[:, 0].mean().item()
            if shared[:, 1].any() and stop.signal is None:
                stop.signal = "a stop signal on another process"
            if not np.isfinite(mean_loss):
                raise FusionFramesError(f"the loss became non-finite at step {state['step']}; lower train.lr or "
                                        f"check the data")
            if accelerator.is_main_process:
                bar.update(1)
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                if state["step"] % t.log_every == 0 or state["step"] == t.steps:
                    new = not log_path.exists()
                    with log_path.open("a", newline="") as f:
                        writer = csv.writer(f)
                        if new:
                            writer.writerow(["step", "loss", "lr", "seconds_per_step"])
                        writer.writerow([state["step"], f"{mean_loss:.6f}", schedule.get_last_lr()[0],
                                         f"{time.perf_counter() - started:.3f}"])
            if t.sample_every and state["step"] % t.sample_every == 0 and accelerator.is_main_process:
                write_sample(accelerator.unwrap_model(task), preview_batch, accelerator.device,
                             output / "samples" / f"step_{state['step']:06d}.mp4", t.seed)
            if stop.signal or state["step"] % t.checkpoint_every == 0 or state["step"] == t.steps:
                state["streams"] = batches.positions()
                _write_checkpoint(accelerator, checkpoint, state)
            if stop.signal:
                status = f"stopped by {stop.signal} at step {state['step']}; resume with --resume"
                break
    bar.close()
    final = output / "final"
    if status == "finished" and accelerator.is_main_process:
        trained = accelerator.unwrap_model(task)
        if ema is not None:
            ema.store(params)
            ema.copy_to(params)
        shutil.rmtree(final, ignore_errors=True)
        with staged_folder(final) as staging:
            trained.save(staging)
        if ema is not None:
            ema.restore(params)
        plot_loss(log_path, output / "loss.png")
    # Data-parallel replicas must hold the same weights; checked, not assumed.
    checksum = torch.stack([p.detach().float().sum() for p in params]).sum().reshape(1).to(accelerator.device)
    replicas = accelerator.gather(checksum)
    accelerator.wait_for_everyone()
    return {"step": state["step"], "status": status, "output": str(final), "processes": accelerator.num_processes,
            "replicas_identical": bool((replicas == replicas[0]).all()), "main_process": accelerator.is_main_process}
