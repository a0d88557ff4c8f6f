"""Where and how models run, chosen once: device, autocast precision, memory format, compile, process rank.

Every loop of transferlab takes a ``Runtime`` and does its device- and
precision-specific work through it (moving inputs, autocast, the fp16 gradient
scaler), so a new device or a second process is a change here and in the
engine's loop, nowhere else. Every result records ``Runtime.describe()``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from . import distributed

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    device: str = "cpu"  # "cpu", "cuda:0", "mps"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast dtype; weights stay fp32)
    channels_last: bool = True  # image tensors and conv weights in NHWC: same numbers, faster convolutions
    compile: bool = False  # torch.compile the model before running it
    rank: int = 0  # this process's rank among world_size processes
    world_size: int = 1

    @property
    def device_type(self) -> str:
        return self.device.split(":", 1)[0]

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]

    @property
    def is_main(self) -> bool:
        """The process that writes files (models, checkpoints, store rows, reports)."""
        return self.rank == 0

    def autocast(self):
        """Mixed-precision context for forward passes (a no-op in fp32)."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=dtype)

    def compiled(self, forward, inference: bool = False):
        """``forward`` through ``torch.compile`` when asked for (inference graphs with inductor's weight freezing)."""
        if not self.compile:
            return forward
        import torch._inductor.config as inductor

        compiled = torch.compile(forward)
        if not inference:
            return compiled

        def frozen(*args, **kwargs):
            with inductor.patch(freezing=True):
                return compiled(*args, **kwargs)

        return frozen

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling, needed for fp16 only (bf16 has fp32's range)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.precision == "fp16")

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on this runtime's device, image batches in its memory format."""
        if self.device_type != "cpu":
            x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        return y.to(self.device, non_blocking=True) if self.device_type != "cpu" else y

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model on this runtime's device and memory format (in place; returned for chaining)."""
        model.to(device=self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    @property
    def pin_memory(self) -> bool:
        return self.device_type == "cuda"

    def describe(self) -> dict:
        return asdict(self)

    # -- several processes (torchrun): no-ops in one process ---------------------------------------------
    def alone(self) -> "Runtime":
        """This process on its own (rank 0 of 1): for work only the main process does, e.g. fitting a probe head."""
        return replace(self, rank=0, world_size=1)

    def shard(self, n: int) -> range:
        """This process's contiguous slice of ``range(n)`` for evaluation and extraction (no padding)."""
        return distributed.shard(n, self.rank, self.world_size)

    def train_order(self, n: int, seed: int, epoch: int) -> list[int]:
        """This process's samples of a training epoch (``DistributedSampler``: one permutation over all)."""
        return distributed.train_order(n, seed, epoch, self.rank, self.world_size)

    def parallel(self, model: nn.Module) -> nn.Module:
        """The module to train: ``DistributedDataParallel`` around ``model`` over several processes."""
        return distributed.parallel(model, self.device) if self.world_size > 1 else model

    def sum(self, values) -> list[float]:
        """Element-wise sums over the processes (metrics: sums and counts, then divide)."""
        return distributed.sum_across(values) if self.world_size > 1 else list(values)

    def gather(self, value) -> list:
        """Every process's ``value`` in rank order, on every process."""
        return distributed.gather_objects(value) if self.world_size > 1 else [value]

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every process's rows concatenated in rank order, on every process."""
        return distributed.gather_rows(rows) if self.world_size > 1 else rows

    def broadcast(self, value):
        """The main process's ``value`` on every process."""
        return distributed.broadcast_object(value) if self.world_size > 1 else value

    def barrier(self) -> None:
        if self.world_size > 1:
            distributed.barrier()

    def sync_buffers(self, model: nn.Module) -> None:
        """The main process's BatchNorm statistics on every process."""
        if self.world_size > 1:
            distributed.sync_buffers(model)


def resolve_runtime(device: str = "auto", precision: str = "auto", *, compile: bool = False) -> Runtime:
    """The runtime ``device`` and ``precision`` ask for on this machine.

    ``auto`` device: CUDA when present (this process's local rank under torchrun),
    then Apple's MPS, else the CPU. ``auto`` precision: bf16 on GPUs that support
    it, fp16 on older ones; on a CPU bf16 where it computes bf16 natively (there
    autocast is about twice as fast), else fp32 (emulated bf16 is slower than fp32).
    """
    rank, world_size, _ = distributed.env_world()
    device = _resolve_device(device)
    kind = device.split(":", 1)[0]
    if precision == "auto":
        if kind == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif kind == "cpu" and native_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use auto, {', '.join(PRECISIONS)}")
    if precision == "fp16" and kind == "cpu":
        raise UserError("fp16 runs on GPUs only: use --precision bf16 or fp32 on the CPU")
    distributed.setup(device)  # under torchrun: join the process group (once)
    return Runtime(device=device, precision=precision, channels_last=kind != "mps", compile=compile,
                   rank=rank, world_size=world_size)


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (x86 AVX512-BF16 or AMX, Arm's BF16), read from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16|bf16)\b", text) is not None


def _resolve_device(device: str) -> str:
    device = (device or "auto").strip().lower()
    if device == "auto":
        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cpu":
        return "cpu"
    if device == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise UserError("--device mps: this machine has no Apple GPU")
        return "mps"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA GPU is visible to torch on this machine")
        index = device.partition(":")[2] or os.environ.get("LOCAL_RANK", "0")  # torchrun: a GPU per local rank
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return f"cuda:{int(index)}"
    raise UserError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")


CPU = Runtime()
