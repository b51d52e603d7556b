"""The training loop: one loop for every method.

It owns devices, precision, the optimizer and its schedule, gradient clipping, the non-finite
guard, checkpoints, logging and the online kNN monitor. It knows a method only through the
``Method`` contract (``forward(batch) -> {"loss", ...}``, ``on_step_end(progress)``, ``views``).

Randomness is derived from ``(seed, step)`` at every step (data order from ``(seed, epoch)``), so a
run resumed from a checkpoint draws exactly the views and masks the uninterrupted run would have
drawn, and ends bit-identical on the CPU.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import sys
import time
from pathlib import Path

import torch
import yaml
from torch.profiler import record_function

from .. import auxiliaries, distributed
from ..checkpoint import latest_checkpoint, load_checkpoint, load_state, remove_temporaries, save_checkpoint
from ..config import RunConfig, budget_seconds, to_dict
from ..encoder import Encoder, save_encoder
from ..errors import ConfigError, NonFiniteLossError, disk_error
from ..files import atomic_write
from ..methods.base import Batch, TrainData
from ..schedules import decay_start, learning_rate, phases
from .assemble import assemble, check_resume_config, write_run_files
from .guard import DeviceCheck, StepUndo, fault_text, resolve_check
from .hardware import autocast, flush_denormal, resolve_device, resolve_precision
from .monitor import CollapseAlarm, OnlineKNN
from .signals import StopSignals


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 12_345) % (2**62)


class EpochOrder:
    """Which dataset indices step k uses: a seeded permutation per epoch, last partial batch dropped."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device):
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def __call__(self, step: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(step_seed(self.seed, -1 - epoch))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).to(self.device)
        return self._perm[pos * self.batch_size:(pos + 1) * self.batch_size]


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    steps: int
    images_per_s: float
    encoder: Encoder
    results: dict
    train_set: object = None
    device: torch.device | None = None
    dtype: torch.dtype | None = None
    main: bool = True  # False on the ranks of a data-parallel run other than 0 (which writes the outputs)


class StepForward(torch.nn.Module):
    """One step's forward: the auxiliaries' changes to the views, the method's forward, the
    auxiliaries' losses added. Under DDP all three run inside DDP's forward, so that its search for
    parameters without a gradient (``find_unused_parameters``) starts from the auxiliaries' losses too."""

    def __init__(self, method: torch.nn.Module):
        super().__init__()
        self.method = method

    def forward(self, batch: Batch) -> dict:
        auxiliaries.before(self.method, batch)
        return auxiliaries.add_losses(self.method, batch, self.method(batch))


def data_parallel(method: torch.nn.Module, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the method, the module the step calls): on one process the method itself and its
    StepForward; under torchrun the method with BatchNorm over every rank (torch's SyncBatchNorm on
    CUDA, ``distributed.GlobalBatchNorm`` elsewhere) and its StepForward in DDP, which averages the
    gradients over the ranks.

    DDP looks for parameters that get no gradient in a step (``find_unused_parameters``) only for a
    method that declares it may leave some (``Method.find_unused_parameters``: DINO's and Mugs' last
    layer and SwAV's prototypes, frozen for the first 1% of the steps). Without the search DDP waits
    for their gradients and fails at the next step ("Expected to have finished reduction in the
    prior iteration"); with it, a parameter that no rank used keeps ``grad=None``, as on one process,
    so the optimizer leaves it alone (tests/test_ddp_unused_parameters.py). The search walks the
    autograd graph after every forward, so the other methods do without it."""
    if distributed.world()[1] == 1:
        return method, StepForward(method)
    if device.type == "cuda":
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    else:
        method = distributed.global_batchnorm(method)
    step = torch.nn.parallel.DistributedDataParallel(
        StepForward(method), device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=bool(getattr(method, "find_unused_parameters", False)))
    return method, step


def _log(path: Path, record: dict) -> None:
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise disk_error(exc, path, "metrics") from exc


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the records of steps <= `step` (a killed run logged steps past its last checkpoint)."""
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line + "\n")
    atomic_write(path, lambda tmp: Path(tmp).write_text("".join(kept), encoding="utf-8"))


def stream_position(state: dict, ranks, streaming: bool) -> dict | None:
    """Where this rank's stream goes on after a checkpoint: its own saved position when the checkpoint
    has one per process of this run; otherwise (another number of processes) the earliest position
    any process had not finished, whole shards from there, split over this run's processes: nothing
    is skipped, and up to one shard per process of the earlier run is read again."""
    saved = state.get("streams") or ([state["stream"]] if state.get("stream") else [])
    if not streaming or not saved:
        return None
    if len(saved) == ranks.size:
        return saved[ranks.rank]
    epoch, shard = min((int(p["epoch"]), int(p["shard"])) for p in saved)
    if ranks.main:
        print(f"note: the checkpoint's shard stream was read by {len(saved)} process(es), this run has {ranks.size}: "
              f"the stream goes on from epoch {epoch}, position {shard} of its shard order, whole shards split "
              "over the processes (a few samples are seen again)", file=sys.stderr)
    return {"epoch": epoch, "shard": shard, "offset": 0}


def _scalar(value) -> float:
    return float(value.detach().float()) if torch.is_tensor(value) else float(value)


def train(config: RunConfig, resume: bool = False, stop_after: int | None = None) -> RunResult:
    """Pretrain per `config` and export the encoder to ``<out>/encoder`` (evaluation is the caller's).

    `stop_after` ends the loop after that many total steps without finishing the run (used by tests
    to simulate an interrupted run: a checkpoint is written, nothing else).

    SIGINT or SIGTERM during the steps (main thread only) finishes the current step, saves a
    checkpoint and raises RunInterrupted; a second signal exits the process at once with code
    128 + signal number (see train/signals.py). The previous handlers are back when this returns.
    """
    with flush_denormal(), StopSignals() as stop:
        return _train(config, resume, stop_after, stop)


BUDGET_SKIP, BUDGET_TIMED = 3, 10  # a time budget: after 3 warm-up steps, 10 steps are timed


def _budget_steps(budget: float, spent: float, steps_per_s: float, done: int, config: RunConfig) -> int:
    """The run's step count under a time budget: the steps done, plus what the rest of the budget
    buys at the timed rate; at least enough for the learning-rate phases to fit."""
    o = config.optim
    least = done + 1
    if o.schedule in ("wsd", "infinite"):  # the phases fit (a default decay of 20% has at least 1 step)
        least = max(least, sum(phases(o.schedule, 0, o.warmup_steps, o.cooldown_steps, o.decay_steps)) + 1)
    return max(least, done + int(max(0.0, budget - spent) * steps_per_s))


def _rewrite_config(run_dir: Path, config: RunConfig) -> None:
    """config.yaml with the steps a time budget fixed (what `--resume` and the report read)."""
    atomic_write(run_dir / "config.yaml", lambda tmp: Path(tmp).write_text(yaml.safe_dump(to_dict(config), sort_keys=False)))


def _train(config: RunConfig, resume: bool, stop_after: int | None, stop: StopSignals) -> RunResult:
    run_dir = Path(config.out)
    ckpt_dir = run_dir / "checkpoints"
    latest = latest_checkpoint(ckpt_dir)
    if latest is not None and not resume:
        raise ConfigError(f"run directory '{run_dir}' already has checkpoints (newest: {latest.name}).",
                          "pass --resume to continue it, or choose another --out.")
    if resume:
        check_resume_config(run_dir, config)
        if latest is None:
            print(f"note: --resume: there is no checkpoint in '{ckpt_dir}', so this starts a new run", file=sys.stderr)

    cfg_t = config.train
    if cfg_t.threads:
        torch.set_num_threads(cfg_t.threads)
    device, started = distributed.start(resolve_device(cfg_t.device))  # a torchrun launch joins its process group
    try:
        return _train_ranks(config, resume, stop_after, stop, run_dir, ckpt_dir, latest, device)
    finally:
        if started:
            distributed.end()


def _train_ranks(config: RunConfig, resume: bool, stop_after: int | None, stop: StopSignals, run_dir: Path,
                 ckpt_dir: Path, latest, device: torch.device) -> RunResult:
    cfg_t = config.train
    ranks = distributed.Ranks(device)
    if cfg_t.batch_size % ranks.size:
        raise ConfigError(f"batch size {cfg_t.batch_size} does not split over {ranks.size} processes.",
                          f"use a batch size divisible by {ranks.size} (it is the global batch, over all processes).")
    dtype = resolve_precision(cfg_t.precision, device)
    check = resolve_check(cfg_t.nonfinite_check, device, dtype)  # NaN/Inf: read on the host, or kept on the device
    run = assemble(config, device, gated=check == "device")  # reads the data, checks the recipe against it, builds the parts
    train_set, plugin, method, views, optimizer = run.train_set, run.plugin, run.method, run.views, run.optimizer
    mean, std = run.mean, run.std
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    if ranks.main:
        write_run_files(run)
    ranks.barrier()
    method, forward = data_parallel(method, device)  # torchrun: DDP; BatchNorm over the global batch

    streaming = getattr(train_set, "streaming", False)  # shards (data/shards.py): batches come from a stream
    if streaming:
        stored = labels = None
    else:
        stored = plugin.store(train_set.samples, device)  # the whole training set on the device, as the modality keeps it
        labels = train_set.labels.to(device) if train_set.labels is not None else None
        method.prepare(TrainData(stored, labels, list(mean), list(std)))

    start, budget_steps, position = 0, None, None
    if resume and latest is not None:
        remove_temporaries(ckpt_dir)  # left by a save that was killed
        state = load_checkpoint(latest, map_location=device)
        load_state(method, state, "method", latest)
        load_state(optimizer, state, "optimizer", latest)
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start = int(state["step"])
        budget_steps = state.get("budget_steps")  # a time budget's step count, fixed before this checkpoint
        position = stream_position(state, ranks, streaming)  # where a run from shards goes on (None: from the start)
        saved_size = int(state.get("world_size", 1))
        if saved_size != ranks.size and ranks.main:  # the global batch and its order do not depend on it
            print(f"note: the checkpoint was written by {saved_size} process(es), this run has {ranks.size}: each "
                  f"takes {cfg_t.batch_size // ranks.size} of the global batch of {cfg_t.batch_size} (the same images "
                  "per step; the views and per-process BatchNorm statistics are drawn anew)", file=sys.stderr)
        print(f"resumed from {latest} at step {start}", file=sys.stderr)

    order = EpochOrder(len(train_set), cfg_t.batch_size, cfg_t.seed, device)
    stream = (train_set.stream(cfg_t.batch_size // ranks.size, cfg_t.seed, position, ranks.rank, ranks.size)
              if streaming else None)  # data parallel: each rank its own shards and its share of the batch
    drawn_from = {}  # {step: the stream position its batch was drawn from}, for the steps whose faults are unread
    generator = torch.Generator(device=device)
    monitor = None
    if cfg_t.monitor_every and train_set.labels is not None and len(train_set) > 20:
        shown = train_set.head if streaming else train_set  # from shards: the bank and queries of the first shard
        monitor = OnlineKNN(shown, stored if not streaming else plugin.store(shown.samples, device), plugin,
                            cfg_t.monitor_bank, cfg_t.monitor_queries, cfg_t.seed, device)
    encoder = Encoder(method.backbone, mean, std, plugin.name, getattr(train_set, "schema", None))

    def exported() -> Encoder:
        """The weights the method exports (its backbone; TS2Vec: the average of its iterates)."""
        return Encoder(getattr(method, method.export_name()), mean, std, plugin.name, getattr(train_set, "schema", None))
    metrics_path = run_dir / "metrics.jsonl"
    if not ranks.main:
        monitor = None
    elif not resume and metrics_path.exists():
        metrics_path.unlink()
    elif resume and metrics_path.exists():
        _truncate_metrics(metrics_path, start)  # steps after the checkpoint run again: log them once

    def streams_at(step: int) -> list[dict] | None:
        """Every rank's stream position at `step` (collective: every rank calls it before rank 0 saves)."""
        if stream is None:
            return None
        return ranks.objects(drawn_from.get(step, stream.position()))  # a failed step is redone from its batch

    def state_at(step: int, streams: list[dict] | None) -> dict:
        state = {"step": step, "method": method.state_dict(), "optimizer": optimizer.state_dict(),
                 "config": to_dict(config), "format": "selfsup-checkpoint/1", "export": method.export_name()}
        if budget_steps is not None:
            state["budget_steps"] = budget_steps
        if ranks.size > 1:
            state["world_size"] = ranks.size
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        if streams is not None and len(streams) == 1:  # where the batch of step `step` starts
            state["stream"] = streams[0]
        elif streams is not None:  # data parallel: each rank's, in rank order
            state["streams"] = streams
        return state

    budget = budget_seconds(cfg_t.budget)
    if budget_steps is not None:  # resumed: the budget's steps were fixed before the checkpoint
        config = dataclasses.replace(config, train=dataclasses.replace(cfg_t, steps=budget_steps))
        cfg_t = config.train
    total = cfg_t.steps  # with a budget not fixed yet: provisional, until BUDGET_TIMED steps are timed
    end = min(total, stop_after) if stop_after is not None else total
    bar = None
    if cfg_t.progress and end > start and ranks.main:
        from ..progress import Progress

        bar = Progress(end, "pretrain", unit="step", initial=start)
    trainable = [p for p in method.parameters() if p.requires_grad]
    # BatchNorm statistics (and batch counts, DINO centers, SwAV queues) change in the forward pass,
    # before the loss can be checked; a copy lets a failing step be undone so the saved "last good"
    # state is really the last good one (train/guard.py).
    undo = StepUndo(method, frozen=check == "device")
    device_check = DeviceCheck(device, cfg_t.on_nonfinite == "stop", cfg_t.max_skips) if check == "device" else None
    unread = start  # device check: the first step whose code the host has not read
    alarm = None
    if cfg_t.collapse_check_every and ranks.main:
        alarm = CollapseAlarm(cfg_t.collapse_check_every, cfg_t.collapse_min_std, cfg_t.collapse_min_rank,
                              cfg_t.collapse_patience, print_fn=None if bar is None else bar.write)
    skips = 0  # non-finite steps in a row (train.on_nonfinite=skip)

    def on_fault(step: int, fault: str) -> None:
        """Step `step` (0-based) was undone: count it, and stop the run (its state saved) or warn."""
        nonlocal skips
        skips += 1
        if cfg_t.on_nonfinite == "stop" or skips > cfg_t.max_skips:
            streams = streams_at(step)
            path = (save_checkpoint(ckpt_dir, step, state_at(step, streams), cfg_t.keep_checkpoints) if ranks.main
                    else ckpt_dir / f"step-{step:08d}.pt")
            streak = (f" after {skips - 1} skipped step(s) in a row (train.max_skips={cfg_t.max_skips}); the weights of "
                      f"the last good step ({step + 1 - skips})" if skips > 1 else "; the weights of the last good step")
            raise NonFiniteLossError(f"{fault} at step {step + 1}{streak} are saved in '{path}'.",
                                     "lower optim.lr, set optim.clip_grad (e.g. 1.0) or use train.precision=fp32, then rerun.")
        message = f"warning: skipped step {step + 1}: {fault} ({skips} of at most train.max_skips={cfg_t.max_skips} in a row)"
        if bar is None:
            print(message, file=sys.stderr)
        else:
            bar.write(message)
    train_time, train_images, window_t, window_n = 0.0, 0, time.perf_counter(), 0
    method.train()
    step = start
    stable_end = decay_start(total, config.optim.schedule, config.optim.decay_steps)  # wsd, infinite; else None
    timed_s = 0.0  # the budget's timed steps: BUDGET_TIMED after BUDGET_SKIP from where this process started
    fix_at = start + BUDGET_SKIP + BUDGET_TIMED  # (a run resumed before its steps were fixed times them anew)
    stop.install()
    for step in itertools.count(start):
        if step >= end:
            break
        if budget is not None and budget_steps is None and step == fix_at:
            timed_s = ranks.max(timed_s)  # the slowest rank's rate: every rank fixes the same step count
            budget_steps = _budget_steps(budget, ranks.max(train_time), BUDGET_TIMED / max(timed_s, 1e-9), step, config)
            config = dataclasses.replace(config, train=dataclasses.replace(cfg_t, steps=budget_steps))
            cfg_t, total = config.train, budget_steps
            end = min(total, stop_after) if stop_after is not None else total
            stable_end = decay_start(total, config.optim.schedule, config.optim.decay_steps)
            if ranks.main:
                _rewrite_config(run_dir, config)
                _log(metrics_path, {"step": step, "budget_s": budget, "budget_steps": total,
                                    "timed_steps_per_s": round(BUDGET_TIMED / max(timed_s, 1e-9), 4)})
            if bar is not None:
                bar.total = end
            if step >= end:
                break
        t0 = time.perf_counter()
        progress = step / total
        o = config.optim
        lr = learning_rate(step, total, o.lr, o.warmup_steps, o.schedule, o.final_lr_ratio, o.cooldown_steps,
                           o.const_lr_ratio, o.decay_steps)
        if step == stable_end and ranks.main:  # the weights before the final decay: what a next stage continues from
            try:  # the module the method exports (TS2Vec: the average of its iterates), as at the end
                save_encoder(exported(), run_dir / "encoder-stable")
            except OSError as exc:
                raise disk_error(exc, run_dir / "encoder-stable", "the encoder", latest_checkpoint(ckpt_dir)) from exc
        for group in optimizer.param_groups:
            group["lr"] = lr
        if stream is not None:  # raw samples decoded by the workers, moved here; the views are drawn below
            if device_check is None:
                drawn_from.clear()
            drawn_from[step] = stream.position()
            samples, batch_labels, index = next(stream)
            samples, index = samples.to(device, non_blocking=True), index.to(device)
            batch_labels = None if batch_labels is None else batch_labels.to(device)
        else:
            index = order(step)
            if ranks.size > 1:  # this rank's share of the global batch
                share = cfg_t.batch_size // ranks.size
                index = index[ranks.rank * share:(ranks.rank + 1) * share]
            samples = plugin.gather(stored, index)
            batch_labels = None if labels is None else labels[index]
        seed = step_seed(cfg_t.seed, step) + ranks.rank  # each rank draws its own views
        torch.manual_seed(seed)
        generator.manual_seed(seed)
        with record_function("selfsup.views"):  # phase labels for torch.profiler (benchmarks/gpu_check.py --profile)
            view_list, params = views(samples, generator)
        if cfg_t.channels_last:  # 4-D views (images) in the memory format the convolutions are fastest with
            view_list = [v.contiguous(memory_format=torch.channels_last)
                         if isinstance(v, torch.Tensor) and v.dim() == 4 else v for v in view_list]
        batch = Batch(view_list, params, samples, batch_labels, index, progress,
                      run.layout["n_global"], run.layout["n_local"])
        undo.save()
        with autocast(device, dtype), record_function("selfsup.forward"):
            out = forward(batch)
        loss = out["loss"]
        collapse = fault = None
        if device_check is not None:  # nothing read on the host: the update is skipped on the device (guard.py)
            with record_function("selfsup.backward"):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.optim.clip_grad or math.inf)
            with record_function("selfsup.update"):
                code = device_check.code(loss, grad_norm)
                if ranks.size > 1:  # a bad step on any rank is skipped by every rank
                    torch.distributed.all_reduce(code, op=torch.distributed.ReduceOp.MAX)
                optimizer.found_inf = gate = device_check.gate(code)
                optimizer.step()
                method.on_step_end((step + 1) / total)
                auxiliaries.on_step_end(method, (step + 1) / total)
                undo.keep_where(gate == 0)
                device_check.advance(code)  # the host learns the step's fault when it reads the codes, below
        else:
            if not torch.isfinite(loss.detach()).item():
                fault = f"the loss became {float(loss.detach())}"
            if ranks.any(fault is not None) and fault is None:  # another rank's loss: every rank skips alike
                fault = "the loss became non-finite on another process"
            if fault is None:
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.optim.clip_grad or math.inf)
                if scaler is None and not torch.isfinite(grad_norm).item():
                    fault = "the gradients became non-finite"
            if fault is not None:
                # Undo the step: no optimizer step, no on_step_end (EMA teachers, queues), buffers as before it.
                out = loss = None  # a skipped step's graph is not kept alive into the next forward
                optimizer.zero_grad(set_to_none=True)
                undo.restore()
                on_fault(step, fault)
            else:
                skips = 0
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                method.on_step_end((step + 1) / total)
                auxiliaries.on_step_end(method, (step + 1) / total)
                if alarm is not None and alarm.due(step + 1):  # inside the step's time: its cost is part of the step
                    collapse = alarm(step + 1, out)
        dt = time.perf_counter() - t0
        train_time += dt
        if start + BUDGET_SKIP <= step < fix_at:
            timed_s += dt
        train_images += len(index) * ranks.size  # the global batch: every rank trains as fast
        window_n += len(index) * ranks.size
        done = step + 1
        stopping = ranks.any(stop.signum is not None)  # a SIGINT/SIGTERM arrived (on any rank): save now, then stop
        monitor_due = monitor is not None and (done % cfg_t.monitor_every == 0 or done == total)
        checkpoint_due = done % cfg_t.checkpoint_every == 0 or done == end or stopping
        if device_check is not None and (done % cfg_t.log_every == 0 or checkpoint_due or monitor_due
                                         or (alarm is not None and alarm.due(done))):
            # The host needs to know now: read the codes of the steps since the last read (one transfer)
            # and take them as the host mode takes each step's fault, in order (raises where it stops).
            for at, code in enumerate(device_check.read(), start=unread):
                if code == 0:
                    skips = 0
                    continue
                on_fault(at, fault_text(code))
                if at < step:  # an earlier step's record, as the host mode writes it at that step
                    if ranks.main:
                        _log(metrics_path, {"step": at + 1, "skipped": fault_text(code)})
                else:
                    fault = fault_text(code)
            unread = done
            drawn_from.clear()
            if fault is None and alarm is not None and alarm.due(done):
                collapse = alarm(done, out)
            if fault is not None:
                out = loss = None
        if done % cfg_t.log_every == 0 or done == end:
            now = time.perf_counter()
            record = {"step": done, "lr": lr, "images_per_s": window_n / max(now - window_t, 1e-9)}
            if fault is None:
                record.update({k: _scalar(v) for k, v in out.items() if not torch.is_tensor(v) or v.dim() == 0})
            window_t, window_n = now, 0
        else:
            record = None
        if fault is not None or collapse:
            record = record or {"step": done}
            record.update({"skipped": fault} if fault is not None else collapse)
        if monitor_due:
            t_mon = time.perf_counter()
            record = record or {"step": done}
            record["knn_acc"] = monitor(encoder, dtype)
            window_t += time.perf_counter() - t_mon
        shown = {}
        if record is not None and ranks.main:
            _log(metrics_path, record)
            # a record without the loss (a collapse check, a skipped step) keeps the last one shown
            shown = {name: f"{record[key]:{spec}}" for name, key, spec in
                     (("loss", "loss", ".3f"), (f"{plugin.nouns}/s", "images_per_s", ".0f"), ("online kNN", "knn_acc", ".3f"))
                     if key in record}
        if bar is not None:
            bar.update(1, **shown)
        if checkpoint_due:
            t_ck = time.perf_counter()
            streams = streams_at(done)
            saved = (save_checkpoint(ckpt_dir, done, state_at(done, streams), cfg_t.keep_checkpoints) if ranks.main
                     else ckpt_dir / f"step-{done:08d}.pt")
            ranks.barrier()  # a resume after this point finds the checkpoint on every rank
            window_t += time.perf_counter() - t_ck
        if stopping:
            if bar is not None:
                bar.close()
            raise stop.interrupted(done, saved)
    stop.restore()
    if bar is not None:
        bar.close()
    skipped_shards = []
    if stream is not None:
        stream.close()
        named = set()
        for name, reason in (s for skipped in ranks.objects(stream.skipped) for s in skipped):  # every rank's, once
            if name not in named:
                named.add(name)
                skipped_shards.append((name, reason))
    if end > start:
        step = end
    else:
        step = start

    images_per_s = train_images / train_time if train_time else float("nan")
    if step < total:  # interrupted on purpose (stop_after)
        return RunResult(run_dir, step, images_per_s, encoder, {}, train_set, device, dtype, ranks.main)
    if not ranks.main:  # rank 0 exports, evaluates and reports
        return RunResult(run_dir, total, images_per_s, encoder, {}, train_set, device, dtype, False)

    encoder = exported().eval()
    try:
        save_encoder(encoder, run_dir / "encoder")
    except OSError as exc:
        raise disk_error(exc, run_dir / "encoder", "the encoder", latest_checkpoint(ckpt_dir)) from exc
    results = {"pretrain": {"steps": total, "images_per_s": images_per_s, "device": str(device),
                            "precision": str(dtype).replace("torch.", "") if dtype else "fp32",
                            "backbone": run.backbone_name, "views": run.views_name}}
    if stream is not None:  # every shard skipped, before training or when a worker reached it
        results["pretrain"]["skipped_shards"] = {"count": len(skipped_shards),
                                                 "shards": [{"name": n, "reason": r} for n, r in skipped_shards]}
    return RunResult(run_dir, total, images_per_s, encoder, results, train_set, device, dtype)
