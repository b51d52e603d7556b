"""Momentum (EMA) teachers, shared by BYOL and the other self-distillation methods: the frozen
copy, the fused update, and the momentum schedule with its range check."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import ConfigError
from ..schedules import cosine


class MomentumSchedule:
    """The teacher momentum at a fraction `progress` of training: a half-cosine from `base` (progress
    0) to `final` (progress 1), as in BYOL (Grill et al., NeurIPS 2020): 1 - (1 - base)(cos(pi p) + 1)/2
    for final = 1. Call it with the progress; `owner` names the method in the range error."""

    def __init__(self, owner: str, base: float, final: float = 1.0):
        if not 0.0 <= base <= final <= 1.0:
            raise ConfigError(f"{owner} needs 0 <= base_momentum <= final_momentum <= 1, got {base}, {final}.",
                              "use e.g. base_momentum=0.99, final_momentum=1.0.")
        self.base, self.final = float(base), float(final)

    def __call__(self, progress: float) -> float:
        return cosine(progress, self.base, self.final)

    def __repr__(self) -> str:
        return f"MomentumSchedule({self.base} -> {self.final})"


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` with gradients off: the teacher starts equal to the student."""
    teacher = copy.deepcopy(module)
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher_param <- momentum * teacher_param + (1 - momentum) * student_param, for every parameter;
    buffers (BatchNorm running statistics) are copied from the student.

    `teacher` and `student` must have the same structure (``teacher = frozen_copy(student)``).
    One fused foreach kernel per operation instead of a Python loop over the parameters.
    """
    t_params, s_params = list(teacher.parameters()), list(student.parameters())
    t_buffers, s_buffers = list(teacher.buffers()), list(student.buffers())
    if len(t_params) != len(s_params) or len(t_buffers) != len(s_buffers):
        raise ValueError(f"teacher and student differ: {len(t_params)} vs {len(s_params)} parameters, "
                         f"{len(t_buffers)} vs {len(s_buffers)} buffers")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)
    if t_buffers:
        torch._foreach_copy_(t_buffers, s_buffers)
