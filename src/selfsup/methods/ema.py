"""Momentum (EMA) teachers, shared by BYOL and the other self-distillation methods."""
from __future__ import annotations

import copy

import torch
from torch import nn


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
