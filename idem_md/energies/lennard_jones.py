"""Lennard-Jones clusters LJ-n with a harmonic centring oscillator (reduced units)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import kernels
from .base import Energy
from .pair import PairPotential, pair_displacements, scatter_pair_gradient
from .placement import fcc_cluster_sites

__all__ = ["LennardJonesCluster"]


class LennardJonesCluster(Energy):
    r"""LJ-n cluster, the iDEM benchmark energy (reduced units, kT = 1 by default).

    .. math::

        E(x) = f \, \epsilon \sum_{i<j} \Big[ (r_m/d_{ij})^{12} - 2 (r_m/d_{ij})^{6} \Big]
               + c \sum_i |x_i - \bar x|^2, \qquad d_{ij} = \sqrt{|x_i - x_j|^2 + s}

    with pair factor ``f = 2``, softening ``s = 1e-6``, oscillator weight
    ``c = 1/2`` for the benchmark (the public iDEM code sums ordered pairs, hence
    ``f = 2``; see ``docs/energies.md``).

    Parameters
    ----------
    n_particles : int
        Number of atoms.
    spatial_dim : int
        Usually 3.
    epsilon, r_m : float
        Well depth (energy) and position of the minimum (length); 1 in reduced units.
    pair_factor : float
        ``f`` above; 2 reproduces the benchmark, 1 the textbook LJ cluster.
    softening : float
        ``s`` above, added to squared distances (length^2).
    oscillator_scale : float
        ``c`` above; 0 switches the oscillator off.
    kT : float
        Thermal energy in units of epsilon.
    backend : str
        ``"auto"`` (default: the fused numba kernels of :mod:`idem_md.energies.kernels`
        for CPU float32/float64 batches that need no gradient, when numba imports;
        the pure-torch path otherwise, including CUDA and autograd), ``"torch"``
        (always the pure-torch reference) or ``"numba"`` (the kernels wherever
        they apply).

    Examples
    --------
    >>> import torch
    >>> lj = LennardJonesCluster(2, pair_factor=1.0, softening=0.0, oscillator_scale=0.0)
    >>> float(lj.energy(torch.tensor([[[0., 0., 0.], [1., 0., 0.]]])))
    -1.0
    """

    def __init__(
        self,
        n_particles: int,
        spatial_dim: int = 3,
        epsilon: float = 1.0,
        r_m: float = 1.0,
        pair_factor: float = 2.0,
        softening: float = 1e-6,
        oscillator_scale: float = 0.5,
        kT: float = 1.0,
        name: str | None = None,
        backend: str = "auto",
    ):
        super().__init__(n_particles, spatial_dim, kT, name or f"lj{n_particles}")
        self.backend = kernels.check_backend(backend)
        if n_particles < 2:
            raise ValueError(f"n_particles must be >= 2 for a cluster, got {n_particles}")
        for arg, v in dict(epsilon=epsilon, r_m=r_m).items():
            if not v > 0:
                raise ValueError(f"{arg} must be > 0, got {v!r}")
        if softening < 0 or oscillator_scale < 0:
            raise ValueError("softening and oscillator_scale must be >= 0")
        self.epsilon = float(epsilon)
        self.r_m = float(r_m)
        self.pair_factor = float(pair_factor)
        self.softening = float(softening)
        self.oscillator_scale = float(oscillator_scale)

    def _identity_extra(self) -> dict[str, Any]:
        return dict(epsilon=self.epsilon, r_m=self.r_m, pair_factor=self.pair_factor,
                    softening=self.softening, oscillator_scale=self.oscillator_scale)

    translation_invariant = True

    def initial_configuration(self, seed: int = 0) -> torch.Tensor:
        """In 3D the ``n`` fcc sites (nearest-neighbour distance ``0.95 r_m``) nearest the origin,
        jittered by ``0.02 r_m`` (minimum distance about ``0.9 r_m``), centred; otherwise the
        base class's random placement. ``(n, d)`` float64, lengths in r_m units."""
        if self.spatial_dim != 3:
            return super().initial_configuration(seed)
        rng = np.random.default_rng(seed)
        sites = fcc_cluster_sites(self.n_particles) * (0.95 * self.r_m)
        x = sites + rng.normal(scale=0.02 * self.r_m, size=sites.shape)
        return torch.as_tensor(x - x.mean(0), dtype=torch.float64)

    def openmm_pair_potential(self) -> PairPotential:
        r"""LJ pairs and the centring oscillator as one pair expression.

        The oscillator :math:`c \sum_i |x_i - \bar x|^2` equals
        :math:`(c/n) \sum_{i<j} |x_i - x_j|^2`, so per unordered pair the energy is
        ``f eps (q^6 - 2 q^3) + (c/n) r^2`` with ``q = r_m^2 / (r^2 + s)``.
        """
        return PairPotential(
            "lj_fe*(q^6 - 2*q^3) + osc_k*r2; q = lj_rm2/(r2 + lj_soft)",
            {
                "lj_fe": self.pair_factor * self.epsilon,  # energy
                "lj_rm2": self.r_m * self.r_m,  # length^2
                "lj_soft": self.softening,  # length^2
                "osc_k": self.oscillator_scale / self.n_particles,  # energy / length^2 per pair
            },
            f"idem_md {self.name}: LJ pairs + centring oscillator",
        )

    def _pair_terms(self, x: torch.Tensor):
        diff, i, j = pair_displacements(x)  # (B, P, d)
        r2 = (diff * diff).sum(-1) + self.softening  # (B, P)
        inv6 = (self.r_m * self.r_m / r2) ** 3
        return diff, i, j, r2, inv6

    def _oscillator(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        centred = x - x.mean(dim=1, keepdim=True)  # (B, n, d)
        e = self.oscillator_scale * (centred * centred).sum((-2, -1))
        # d/dx_i of c sum |x_k - xbar|^2 is 2c (x_i - xbar): the xbar terms cancel.
        return e, 2.0 * self.oscillator_scale * centred

    def _kernel_params(self) -> dict[str, float]:
        return dict(epsilon=self.epsilon, r_m=self.r_m, pair_factor=self.pair_factor,
                    softening=self.softening, oscillator_scale=self.oscillator_scale)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        if kernels.use_numba(self.backend, x):
            return kernels.lj_energy_torch(x, **self._kernel_params())
        _, _, _, _, inv6 = self._pair_terms(x)
        e_pair = self.pair_factor * self.epsilon * (inv6 * inv6 - 2.0 * inv6).sum(-1)
        return e_pair + self._oscillator(x)[0]

    def _energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if kernels.use_numba(self.backend, x):
            return kernels.lj_energy_forces_torch(x, **self._kernel_params())
        diff, i, j, r2, inv6 = self._pair_terms(x)
        fe = self.pair_factor * self.epsilon
        e_pair = fe * (inv6 * inv6 - 2.0 * inv6).sum(-1)
        # d(inv6)/d(r2) = -3 inv6 / r2
        dE_dr2 = fe * (-6.0 * inv6 * inv6 + 6.0 * inv6) / r2
        grad = scatter_pair_gradient(dE_dr2, diff, i, j, self.n_particles)
        e_osc, g_osc = self._oscillator(x)
        return e_pair + e_osc, -(grad + g_osc)
