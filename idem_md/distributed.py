"""torch.distributed plumbing for IDEMSampler (data parallel over ranks).

Strategy (see docs/scaling.md): every rank trains on its share of the global
batch and evaluates the Monte-Carlo estimator's energies for that share; the
score network is wrapped in DistributedDataParallel so gradients are averaged;
each rank integrates the reverse SDE for its share of the new buffer samples and
the shares are all-gathered, so every rank holds an identical replicated buffer
and uniform sampling from it is preserved. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_distributed_from_env"]


def init_distributed_from_env(backend: str | None = None) -> bool:
    """Initialise the default process group when launched by torchrun (``WORLD_SIZE > 1``).

    Backend: NCCL when CUDA is available, gloo otherwise. Returns True when distributed.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"))
    return True


@dataclass(frozen=True)
class DistContext:
    """Rank and world size, with the few collectives the sampler needs (no-ops for one process)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def detect(cls) -> "DistContext":
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> int:
        """This rank's share of ``n`` items (the remainder goes to the lowest ranks)."""
        return n // self.world_size + (1 if self.rank < n % self.world_size else 0)

    def _device(self) -> torch.device:
        if self.enabled and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def sum(self, value: float) -> float:
        """Sum of a Python number over ranks."""
        if not self.enabled:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is true on any rank."""
        return self.sum(1.0 if flag else 0.0) > 0

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate ``x`` (variable first dimension) from all ranks, in rank order, on every rank."""
        if not self.enabled:
            return x
        dev = self._device()
        n = torch.tensor([x.shape[0]], dtype=torch.int64, device=dev)
        sizes = [torch.zeros_like(n) for _ in range(self.world_size)]
        dist.all_gather(sizes, n)
        sizes = [int(s.item()) for s in sizes]
        padded = torch.zeros((max(sizes), *x.shape[1:]), dtype=x.dtype, device=dev)
        padded[: x.shape[0]] = x.to(dev)
        parts = [torch.zeros_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)]).to(x.device)

    def gather_objects(self, obj) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()
