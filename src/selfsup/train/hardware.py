"""Device and precision choices made once per run."""
from __future__ import annotations

import contextlib
import functools
import os

import torch

from ..errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}.", "use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available here.", "use --device cpu.")
    return device


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which bf16 convolutions and matmuls run at native speed;
# any other cap makes oneDNN emulate bf16 (measured: convnet6 at 35 images/s against 355 in fp32).
_ONEDNN_BF16_ISAS = {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                     "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
                     "AVX10_2_512_AMX_2", "ALL", "DEFAULT"}


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX512-BF16, where oneDNN runs bf16 convolutions ~2.5x faster than fp32,
    unless the process caps the instruction set below them (ATEN_CPU_CAPABILITY=avx2, or
    ONEDNN_MAX_CPU_ISA=AVX2 and the like): bf16 is then emulated and ~10x slower than fp32."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    if " amx_bf16" not in flags and " avx512_bf16" not in flags:
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap and cap not in _ONEDNN_BF16_ISAS:
        return False
    return torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("fp16 autocast needs a CUDA device.", "use train.precision=bf16 or fp32 on the CPU.")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@functools.cache
def _openmp_runtime():
    """The OpenMP runtime torch's intra-op pool runs on, as a ctypes library (the one already loaded:
    found in /proc/self/maps), or None where there is none to reach (not Linux, or another backend)."""
    import ctypes

    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if line.rstrip().endswith((".so", ".so.1", ".so.5"))}
    except OSError:
        return None
    names = ("libgomp", "libiomp5", "libomp")  # GNU, Intel and LLVM runtimes all export GOMP_parallel
    found = sorted((p for p in paths if os.path.basename(p).startswith(names)),
                   key=lambda p: "torch" not in p)  # torch's own copy first
    for path in found:
        try:
            lib = ctypes.CDLL(path)
            body = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
            lib.GOMP_parallel.argtypes = [body, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            lib.GOMP_parallel.restype = None
            return lib, body
        except (OSError, AttributeError):
            continue
    return None


def set_flush_denormal_everywhere(on: bool) -> bool:
    """``torch.set_flush_denormal`` on the calling thread and on every thread of torch's OpenMP pool.

    The flag lives in each thread's floating-point control register, a new thread copies its
    creator's, and torch sets it on the calling thread only: pool threads started while it was on
    would keep flushing after it is turned off (then a sum came out a few ulps apart with one thread
    and with two, after a training run in the same process), and pool threads started before would
    never flush. So the setting runs once on each thread of an OpenMP team as large as the pool can
    be. Returns whether this CPU supports flushing; where the pool cannot be reached (not Linux)
    only the calling thread is set."""
    supported = torch.set_flush_denormal(on)
    runtime = _openmp_runtime()
    if supported and runtime is not None:
        lib, body = runtime
        callback = body(lambda _: torch.set_flush_denormal(on))
        lib.GOMP_parallel(callback, None, max(torch.get_num_threads(), os.cpu_count() or 1), 0)
    return supported


@contextlib.contextmanager
def flush_denormal():
    """Treat denormal floats as zero inside the block (tiny late-training gradients otherwise slow CPU
    steps ~20%), and restore IEEE behaviour after it: other code in the process (hypothesis, numpy
    users) relies on subnormals. The flag is per thread, so it is set on the calling thread and on
    every thread of torch's pool, on entry and on exit (`set_flush_denormal_everywhere`)."""
    enabled = set_flush_denormal_everywhere(True)
    try:
        yield enabled
    finally:
        if enabled:
            set_flush_denormal_everywhere(False)
