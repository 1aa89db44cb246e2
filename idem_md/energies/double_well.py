"""The many-particle double-well potential DW-n (reduced units)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import kernels
from .base import Energy
from .pair import PairPotential, pair_displacements, scatter_pair_gradient
from .placement import random_sequential_placement

__all__ = ["MultiDoubleWell"]

_MIN_DISTANCE = 1e-12  # guards 1/d in the forces when two particles coincide


class MultiDoubleWell(Energy):
    r"""Pairwise double well, the iDEM DW-4 benchmark for 4 particles in 2D.

    .. math::

        E(x) = \sum_{i<j} \big[ a (d_{ij} - d_0)^4 + b (d_{ij} - d_0)^2 \big],
        \qquad d_{ij} = |x_i - x_j|

    with ``a = 0.9``, ``b = -4``, ``d_0 = 4`` and kT = 1 for the benchmark.

    ``backend`` is ``"auto"`` (default: the fused numba kernels of
    :mod:`idem_md.energies.kernels` for CPU float32/float64 batches that need no
    gradient, when numba imports; the pure-torch path otherwise), ``"torch"``
    (always the pure-torch reference) or ``"numba"`` (the kernels wherever they apply).

    Examples
    --------
    >>> import torch
    >>> dw = MultiDoubleWell(2)
    >>> float(dw.energy(torch.tensor([[[0., 0.], [4., 0.]]])))
    0.0
    """

    def __init__(self, n_particles: int = 4, spatial_dim: int = 2, a: float = 0.9, b: float = -4.0,
                 d0: float = 4.0, kT: float = 1.0, name: str | None = None, backend: str = "auto"):
        super().__init__(n_particles, spatial_dim, kT, name or f"dw{n_particles}")
        self.backend = kernels.check_backend(backend)
        if n_particles < 2:
            raise ValueError(f"n_particles must be >= 2, got {n_particles}")
        self.a, self.b, self.d0 = float(a), float(b), float(d0)

    def _identity_extra(self) -> dict[str, Any]:
        return dict(a=self.a, b=self.b, d0=self.d0)

    translation_invariant = True

    def initial_configuration(self, seed: int = 0) -> torch.Tensor:
        """Random sequential placement in a box of side ``d0 * n^(1/d)`` with minimum distance
        ``d0 / 2``, centred; ``(n, d)`` float64."""
        n, d = self.n_particles, self.spatial_dim
        x = random_sequential_placement(np.random.default_rng(seed), n, d, box=self.d0 * n ** (1.0 / d),
                                        min_distance=self.d0 / 2)
        return torch.as_tensor(x - x.mean(0), dtype=torch.float64)

    def openmm_pair_potential(self) -> PairPotential:
        """``a (d - d0)^4 + b (d - d0)^2`` per unordered pair, ``d = sqrt(r2)``."""
        return PairPotential("dw_a*u^4 + dw_b*u^2; u = sqrt(r2) - dw_d0",
                             {"dw_a": self.a, "dw_b": self.b, "dw_d0": self.d0},
                             f"idem_md {self.name}: pairwise double well")

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        if kernels.use_numba(self.backend, x):
            return kernels.dw_energy_torch(x, self.a, self.b, self.d0)
        diff, _, _ = pair_displacements(x)
        u = (diff * diff).sum(-1).sqrt() - self.d0  # (B, P)
        u2 = u * u
        return (self.a * u2 * u2 + self.b * u2).sum(-1)

    def _energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if kernels.use_numba(self.backend, x):
            return kernels.dw_energy_forces_torch(x, self.a, self.b, self.d0)
        diff, i, j = pair_displacements(x)
        d = (diff * diff).sum(-1).sqrt().clamp_min(_MIN_DISTANCE)
        u = d - self.d0
        u2 = u * u
        e = (self.a * u2 * u2 + self.b * u2).sum(-1)
        dE_dd = 4.0 * self.a * u2 * u + 2.0 * self.b * u
        grad = scatter_pair_gradient(dE_dd / (2.0 * d), diff, i, j, self.n_particles)  # dd/dr2 = 1/(2d)
        return e, -grad
