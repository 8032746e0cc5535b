"""Data-parallel training when launched by `torchrun` (DDP; gloo on CPU, NCCL on CUDA).

Without torchrun's environment (WORLD_SIZE unset or 1) everything here is a no-op, so the same
training code runs on one process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass
class DistContext:
    """This process's place in a data-parallel job."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Join the process group described by torchrun's environment, if any."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        import torch.distributed as dist

        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            device, backend = torch.device("cuda", local_rank), "nccl"
        else:
            device, backend = torch.device("cpu"), "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        return cls(rank=rank, world_size=world_size, device=device)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model wrapped in DistributedDataParallel when distributed, else itself."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def close(self) -> None:
        """Leave the process group."""
        if self.active:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


@contextlib.contextmanager
def single_process() -> Iterator[None]:
    """Train on this process alone inside the block, even when launched by torchrun.

    Fine-tuning after the data-parallel training (pruning, quantization-aware training) runs on
    rank 0 only; without this, `fit` would try to rejoin a process group whose other members
    are gone."""
    saved = os.environ.get("WORLD_SIZE")
    if saved is not None:
        os.environ["WORLD_SIZE"] = "1"
    try:
        yield
    finally:
        if saved is not None:
            os.environ["WORLD_SIZE"] = saved
