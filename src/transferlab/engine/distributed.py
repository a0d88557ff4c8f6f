"""Several processes on one run, through ``torch.distributed``: the process group, sharding and gathering.

``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
``resolve_runtime`` calls ``setup`` once, so the rest of transferlab sees only the
``Runtime`` (its ``rank`` and ``world_size``) and these helpers, which are no-ops
in a single process. The backend follows the device: NCCL with one GPU per local
rank, gloo on CPUs; nothing else differs between the two.

Evaluation and extraction shard without padding (``shard``: contiguous slices), so
gathering the shards in rank order gives back exactly the one-process order;
training shuffles with ``DistributedSampler`` (see ``train_order``).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
from typing import Any, Sequence, TypeVar

import torch
from torch import distributed as dist
from torch import nn

T = TypeVar("T")


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as torchrun sets them (0, 1, 0 outside torchrun)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: str) -> None:
    """Join the process group torchrun's environment describes (once per process; nothing for one process)."""
    _, world_size, _ = env_world()
    if world_size <= 1 or dist.is_initialized():
        return
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl", device_id=torch.device(device))
    else:
        dist.init_process_group("gloo")
    atexit.register(_teardown)


def _teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _device() -> torch.device:
    """Where collectives' tensors live: the rank's GPU under NCCL, the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard(n: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous slice of ``range(n)``: the slices cover it once, in order, sizes differing
    by at most one (no padding, unlike ``DistributedSampler``)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def train_order(n: int, seed: int, epoch: int, rank: int, world_size: int) -> list[int]:
    """This rank's sample indices of one training epoch, from ``DistributedSampler`` (seeded, ``set_epoch``).

    The permutation is ``randperm(n)`` seeded with ``seed + epoch`` whatever the process count,
    and rank r takes every world_size-th element from r: so local batch k of every rank
    together make global batch k of one process (batch size split evenly). The sampler
    pads the permutation with its first (world_size - 1) elements at most, as DDP needs
    equal batch counts.
    """
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def barrier() -> None:
    if active():
        dist.barrier()


def sum_across(values: Sequence[float]) -> list[float]:
    """Element-wise sums over the ranks (float64: counts and sums of losses stay exact)."""
    if not active():
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_objects(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank (small things: lists of ids, counts)."""
    if not active():
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def broadcast_object(value: T) -> T:
    """Rank 0's ``value`` on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=_device())
    return box[0]


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """The ranks' row blocks (same trailing shape, any row counts) concatenated in rank order, on every rank.

    Padded ``all_gather`` of tensors: no pickling of large feature or prefix matrices.
    """
    if not active():
        return rows
    counts = [int(c) for c in gather_objects(len(rows))]
    shape = tuple(rows.shape[1:])
    dtype = rows.dtype
    padded = torch.zeros((max(counts), *shape), dtype=dtype, device=_device())
    padded[: len(rows)] = rows.to(padded.device)
    blocks = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(blocks, padded)
    return torch.cat([block[:count] for block, count in zip(blocks, counts)]).to(rows.device)


def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: each rank's last training forward
    updated them from its own batch; evaluation and checkpoints use one set."""
    if not active():
        return
    for buffer in model.buffers():
        if buffer.is_floating_point() or buffer.dtype in (torch.int64, torch.int32):
            moved = buffer.data.to(_device())
            dist.broadcast(moved, src=0)
            if moved.data_ptr() != buffer.data.data_ptr():
                buffer.data.copy_(moved)


def parallel(model: nn.Module, device: str) -> nn.Module:
    """``model`` under ``DistributedDataParallel`` (gradients averaged over the ranks) in a distributed run,
    else ``model`` itself. Wrap after freezing: DDP reduces the parameters that need gradients then."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=device_ids)


def first_to_fail() -> bool:
    """Whether this process is the first of its torchrun job to stop on bad input, and so the one to say why.

    The ranks share torchrun's key-value store (the agent's, or the process group's): an atomic counter
    there picks the first, so a rank whose input alone is bad still prints its line and ranks that all
    meet the same bad input print it once. With no store yet (before the group is joined: every rank read
    the same input) rank 0 reports; with a store that no longer answers, every failing rank does.
    """
    store = _store()
    if store is None:
        return env_world()[0] == 0
    try:
        return int(store.add(_failed_key(), 1)) == 1
    except Exception:  # noqa: BLE001 - the store's host exited: better twice than never
        return True


def another_failed() -> bool:
    """Whether some rank of this job already stopped on bad input (this process's own failure then follows
    from it: a collective whose peer left)."""
    store = _store()
    try:
        return store is not None and int(store.add(_failed_key(), 0)) > 0
    except Exception:  # noqa: BLE001 - no answer: nothing known
        return False


def _failed_key() -> str:
    return (f"transferlab/failed/{os.environ.get('TORCHELASTIC_RUN_ID', '')}/"
            f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}")


def _store(timeout_s: float = 10.0):
    """The job's key-value store: torchrun's agent store, else the process group's; ``None`` when neither."""
    from datetime import timedelta

    if env_world()[1] <= 1:
        return None
    try:
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                                 timeout=timedelta(seconds=timeout_s))
        if dist.is_initialized():
            store = dist.distributed_c10d._get_default_store()
            store.set_timeout(timedelta(seconds=timeout_s))
            return store
    except Exception:  # noqa: BLE001 - unreachable
        return None
    return None


def digest(value: Any) -> str:
    """A short digest of a JSON-able value (the history's record of which samples an epoch saw)."""
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]
