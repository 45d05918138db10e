"""Where the models run and in which precision: the device (CPU or CUDA) and bfloat16 only where
the hardware has it natively. On a CPU without native bf16 (AVX2 only) torch emulates bf16, which
is several times slower than fp32 (docs/models.md), so `auto` picks fp32 there."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")


class HardwareError(ValueError):
    """A device or precision this machine cannot give; the message says which and why."""


def cpu_capability() -> str:
    """torch's name for the CPU's vector instructions: 'AVX2', 'AVX512', 'DEFAULT', ..."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # very old or unusual builds lack the query
        return "unknown"


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16, AMX, or AVX512 cores that it
    handles at full speed), as torch reports it. SIMNET_NATIVE_BF16=1 or 0 overrides the answer:
    the test suite runs `auto` as a native-bf16 CPU would on any CPU (emulated, slow but the same
    arithmetic), and a user can overrule a CPU that oneDNN misjudges."""
    import torch

    forced = os.environ.get("SIMNET_NATIVE_BF16")
    if forced is not None:
        if forced not in ("0", "1"):
            raise HardwareError(f"SIMNET_NATIVE_BF16={forced!r}: expected 1 (native bf16) or 0 (not)")
        return forced == "1"
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # a build without oneDNN: no fast bf16
        return False


def cuda_has_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass(frozen=True)
class Compute:
    """A resolved choice: `device` is "cpu" or "cuda", `precision` "bf16" or "fp32"."""

    device: str = "cpu"
    precision: str = "fp32"

    def autocast(self):
        """bf16 autocast where the precision is bf16, a no-op context otherwise."""
        import torch

        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def describe(self) -> dict:
        """For the results' meta and a run's first line of output."""
        import torch

        name = torch.cuda.get_device_name() if self.device == "cuda" else _cpu_name()
        return {"device": self.device, "device_name": name, "precision": self.precision,
                "cpu_capability": cpu_capability(), "cpu_native_bf16": cpu_has_native_bf16()}

    def summary(self) -> str:
        d = self.describe()
        return (f"{d['device']} ({d['device_name']}), {d['precision']}; CPU capability "
                f"{d['cpu_capability']}, native bf16 {'yes' if d['cpu_native_bf16'] else 'no'}")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def resolve(device: str = "auto", precision: str = "auto") -> Compute:
    """The device and precision to run on. `auto` device: CUDA where torch sees a GPU, else the
    CPU. `auto` precision: bf16 only where it is native to that device, fp32 elsewhere. An
    explicit choice is kept (bf16 on a CPU without it runs, emulated and slow)."""
    import torch

    if device not in DEVICES:
        raise HardwareError(f"device {device!r}: expected one of {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise HardwareError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise HardwareError("device cuda: torch sees no CUDA GPU here (a CPU build of torch, or no "
                            "driver); use --device cpu or auto")
    if precision == "auto":
        native = cuda_has_bf16() if device == "cuda" else cpu_has_native_bf16()
        precision = "bf16" if native else "fp32"
    return Compute(device, precision)


def tune_allocator() -> bool:
    """On glibc, serve large tensors from the heap and keep freed memory for the next one, instead
    of mapping fresh pages from the kernel (which it zeroes) for every activation: the same
    numbers, less time in page faults (docs/models.md). Returns whether it applied."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, ...): leave the allocator alone
        return False
    # up to 32 MB from the heap (a 256x384 frame's activations), larger ones mapped and given back as
    # before; at most 128 MB of freed heap kept: a 2048x2048 image's peak memory stays bounded
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 128 << 20))
