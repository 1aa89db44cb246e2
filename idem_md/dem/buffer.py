"""FIFO replay buffer of sampler outputs (iDEM, Algorithm 1)."""

from __future__ import annotations

import torch

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """Fixed-capacity first-in-first-out buffer with uniform sampling with replacement.

    Stores configurations in the sampler's working coordinates, ``(capacity, n, d)``.

    Parameters
    ----------
    capacity : int
        Maximum number of stored configurations (the oldest are overwritten).
    event_shape : tuple of int
        ``(n_particles, spatial_dim)``.

    Examples
    --------
    >>> buf = ReplayBuffer(4, (2, 3))
    >>> buf.add(torch.zeros(6, 2, 3))
    >>> len(buf)
    4
    >>> buf.sample(10).shape
    torch.Size([10, 2, 3])
    """

    def __init__(self, capacity: int, event_shape: tuple[int, int], dtype=torch.float32, device=None):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self.event_shape = tuple(event_shape)
        self.data = torch.zeros((capacity, *self.event_shape), dtype=dtype, device=device)
        self._next = 0  # slot that the next insertion overwrites
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, x: torch.Tensor) -> None:
        """Append ``x`` of shape ``(m, n, d)``, overwriting the oldest entries when full."""
        if x.ndim != 3 or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (m, {self.event_shape[0]}, {self.event_shape[1]}), got {tuple(x.shape)}")
        x = x.detach().to(self.data)
        if x.shape[0] >= self.capacity:
            x = x[-self.capacity:]
        m = x.shape[0]
        idx = (self._next + torch.arange(m, device=self.data.device)) % self.capacity
        self.data[idx] = x
        self._next = (self._next + m) % self.capacity
        self._size = min(self._size + m, self.capacity)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` entries drawn uniformly with replacement, ``(n, *event_shape)``."""
        if self._size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        idx = torch.randint(self._size, (n,), generator=generator, device=self.data.device)
        return self.data[idx]

    def contents(self) -> torch.Tensor:
        """Stored entries in insertion order (oldest first), ``(len, n, d)``."""
        if self._size < self.capacity:
            return self.data[: self._size].clone()
        return torch.roll(self.data, -self._next, dims=0).clone()

    def state_dict(self) -> dict:
        return {"data": self.contents().cpu(), "capacity": self.capacity}

    def load_state_dict(self, state: dict) -> None:
        data = state["data"]
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"checkpoint buffer capacity {int(state['capacity'])} != configured buffer_size {self.capacity}")
        self._next, self._size = 0, 0
        self.data.zero_()
        if data.shape[0]:
            self.add(data)
