"""The non-finite guard: a step whose loss or gradients are NaN/Inf changes nothing.

A step that goes wrong is undone whole: no optimizer update, and every tensor its forward or
``on_step_end`` changed (BatchNorm statistics, EMA teachers, queues, centers) is put back, so the
weights saved as "the last good step" really are. ``train.on_nonfinite`` then stops the run or
skips the step (at most ``train.max_skips`` in a row). Two ways to run it, one behaviour
(``train.nonfinite_check``):

- ``host``: after the forward the trainer reads the loss on the host, and after the backward the
  gradient norm, and branches. Reading a tensor waits for the device to finish everything queued:
  on the CPU that costs nothing, on a GPU it drains the queue twice per step and the GPU idles
  while Python launches the next kernels.
- ``device``: nothing is read inside the step. A code (0 finite; 1, 2, 3 a NaN, +Inf, -Inf loss;
  4 non-finite gradients) is computed on the device; the optimizer's ``found_inf`` skips the update
  there (torch's fused AdamW and SGD, LARS here); ``on_step_end`` runs and the changed tensors are
  selected back with ``torch.where``; a device flag freezes the run from the step that must stop
  it (``stop``, or one skip too many). The codes are read in one transfer when the host needs to
  know anyway (a log line, a checkpoint, the end of the run), and replayed step by step through
  the same bookkeeping as ``host``: the same warnings, metrics records, checkpoint and error.
  ``auto`` picks it on CUDA (fp16 excepted: its GradScaler already skips overflowing steps and
  reads its own flag), ``host`` elsewhere.

Cost of ``device`` per step: a copy of the method's buffers and frozen parameters before the
forward (``host`` copies the buffers too), a ``torch.where`` per such tensor after the step, and a
few scalar kernels; against two host round trips on a GPU. tests/test_numerical_faults.py runs
every fault case in both modes; tests/test_sync_free.py checks that a ``device`` step reads
nothing on the host (and, on CUDA, counts synchronizations with torch's sync debug mode).
"""
from __future__ import annotations

import torch

from ..errors import ConfigError

CHECKS = ("auto", "host", "device")
_FAULTS = {1: "the loss became nan", 2: "the loss became inf", 3: "the loss became -inf",
           4: "the gradients became non-finite"}


def resolve_check(name: str, device: torch.device, dtype: torch.dtype | None) -> str:
    """'host' or 'device' for ``train.nonfinite_check`` = `name` on this device and precision."""
    if name == "auto":
        return "device" if device.type == "cuda" and dtype != torch.float16 else "host"
    if name == "device" and dtype == torch.float16:
        raise ConfigError("train.nonfinite_check=device does not combine with train.precision=fp16 (its GradScaler "
                          "skips overflowing steps itself).", "use train.precision=bf16 or train.nonfinite_check=host.")
    return name


def fault_text(code: int, loss: float | None = None) -> str:
    """What went wrong, as the error and the metrics say it."""
    if code in (1, 2, 3) and loss is not None:
        return f"the loss became {loss}"
    return _FAULTS[code]


class StepUndo:
    """Copies of the tensors a step changes outside the optimizer, to put them back.

    `frozen`: also the parameters without a gradient (EMA teachers) and the trainable tensors
    ``on_step_end`` changes, which the device mode runs on a bad step too; the host mode skips
    ``on_step_end`` on a bad step and only needs the buffers the forward moved."""

    def __init__(self, method: torch.nn.Module, frozen: bool):
        self.tensors = list(method.buffers())
        if frozen:  # and what on_step_end changes besides (SwAV's prototypes: Method.changed_at_step_end)
            self.tensors += [p for p in method.parameters() if not p.requires_grad]
            self.tensors += [t for t in getattr(method, "changed_at_step_end", list)()]
        self.copies = [t.detach().clone() for t in self.tensors]

    def save(self) -> None:
        if self.tensors:
            torch._foreach_copy_(self.copies, self.tensors)

    def restore(self) -> None:
        if self.tensors:
            torch._foreach_copy_(self.tensors, self.copies)

    @torch.no_grad()
    def keep_where(self, ok: torch.Tensor) -> None:
        """Each tensor as the step left it where `ok` (0-dim bool), else as saved: no host read."""
        for t, saved in zip(self.tensors, self.copies):
            torch.where(ok, t, saved, out=t)


class DeviceCheck:
    """The ``device`` mode's flags: this step's code, the run of bad steps, the freeze, and the codes
    not yet read by the host."""

    def __init__(self, device: torch.device, stop_at_first: bool, max_skips: int):
        self.stop_at_first, self.max_skips = stop_at_first, max_skips
        self.streak = torch.zeros((), dtype=torch.long, device=device)
        self.frozen = torch.zeros((), dtype=torch.bool, device=device)  # from the step that stops the run on
        self.codes: list[torch.Tensor] = []  # one 0-dim code per step since the last read

    @torch.no_grad()
    def code(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
        """0 finite, 1/2/3 NaN/+Inf/-Inf loss, 4 non-finite gradients (0-dim long, on the device)."""
        loss, grad_norm = loss.detach().float(), grad_norm.detach().float()
        code = torch.where(torch.isfinite(grad_norm), 0, 4)
        code = torch.where(loss == float("-inf"), 3, code)
        code = torch.where(loss == float("inf"), 2, code)
        return torch.where(torch.isnan(loss), 1, code)

    def gate(self, code: torch.Tensor) -> torch.Tensor:
        """1.0 where the update must not happen (a bad step, or the run is frozen), for ``found_inf``."""
        return ((code > 0) | self.frozen).float()

    @torch.no_grad()
    def advance(self, code: torch.Tensor) -> None:
        bad = code > 0
        self.streak = torch.where(bad, self.streak + 1, 0)
        stops = bad if self.stop_at_first else self.streak > self.max_skips
        self.frozen |= stops
        self.codes.append(code)

    def read(self) -> list[int]:
        """The codes of the steps since the last read, oldest first (one device-to-host transfer)."""
        if not self.codes:
            return []
        codes = torch.stack(self.codes).tolist()
        self.codes = []
        return codes
