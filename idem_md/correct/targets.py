"""Targets and proposals of the correction step: ``log p~`` from an Energy, ``log q`` from a proposal."""

from __future__ import annotations

import math
from typing import Callable, Protocol

import torch

from ..dem.sde import degrees_of_freedom, remove_mean
from ..energies.base import Energy

__all__ = ["Proposal", "GaussianProposal", "BoltzmannTarget", "multinomial_resample", "LogDensityFn"]

LogDensityFn = Callable[[torch.Tensor], tuple]  # x (B,n,d) -> (log pi (B,), grad (B,n,d)[, aux (B,m)])


class Proposal(Protocol):
    """A normalised proposal density ``q`` over ``(B, n, d)`` configurations (energy's units)."""

    def log_prob_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``log q(x)`` ``(B,)`` in nats and its gradient ``(B, n, d)``."""

    def sample_with_log_prob(self, n: int, *, generator: torch.Generator | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws ``(n, n_particles, d)`` and their ``log q`` ``(n,)``."""


class GaussianProposal:
    """Isotropic Gaussian ``N(mean, std^2 I)``; on the mean-free subspace when ``mean_free``.

    Parameters
    ----------
    mean : torch.Tensor
        ``(n, d)`` centre, in the energy's length unit.
    std : float
        Standard deviation per coordinate, same unit, > 0.
    mean_free : bool
        Density on the ``(n-1) d``-dimensional centre-of-mass-free subspace (particle systems).
    """

    def __init__(self, mean: torch.Tensor, std: float, mean_free: bool = False):
        mean = torch.as_tensor(mean, dtype=torch.float64)
        if mean.ndim != 2:
            raise ValueError(f"mean must have shape (n_particles, spatial_dim), got {tuple(mean.shape)}")
        if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
            raise ValueError(f"std must be a finite positive float, got {std!r}")
        self.mean = mean - mean.mean(0) if mean_free else mean
        self.std = float(std)
        self.mean_free = bool(mean_free)
        n, d = mean.shape
        self.dof = degrees_of_freedom(n, d, mean_free)

    def log_prob_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = x - self.mean.to(x)  # (B, n, d)
        if self.mean_free:
            diff = remove_mean(diff)
        lq = -0.5 * diff.pow(2).flatten(1).sum(1) / self.std**2 - 0.5 * self.dof * math.log(2 * math.pi * self.std**2)
        return lq, -diff / self.std**2

    def sample_with_log_prob(self, n: int, *, generator: torch.Generator | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn((n, *self.mean.shape), generator=generator, dtype=torch.float64)
        if self.mean_free:
            z = remove_mean(z)
        x = self.mean + self.std * z
        return x, self.log_prob_and_grad(x)[0]


class BoltzmannTarget:
    """``log p~(x) = -E(x)/kT`` and its gradient ``F/kT`` through ``energy_and_forces``, counted.

    Non-finite energies or forces give ``log p~ = -inf`` and a zero gradient (such a
    point is never accepted and gets zero weight). Gradients of particle systems are
    projected onto the mean-free subspace.
    """

    def __init__(self, energy: Energy, chunk_size: int = 4096):
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an idem_md Energy, got {type(energy).__name__}")
        self.energy = energy
        self.chunk_size = int(chunk_size)
        self.n_evaluations = 0
        self.mean_free = energy.is_particle_system

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B,n,d) -> ((B,), (B,n,d))
        lps, grads = [], []
        dev = self.energy._device() or torch.device("cpu")
        for chunk in torch.split(x, self.chunk_size):
            finite = torch.isfinite(chunk).flatten(1).all(1)
            lp = torch.full((len(chunk),), -math.inf, dtype=x.dtype)
            g = torch.zeros_like(chunk)
            if finite.any():
                e, f = self.energy.energy_and_forces(chunk[finite].to(dev))
                self.n_evaluations += int(finite.sum())
                e, f = e.detach().to(x), f.detach().to(x)
                ok = torch.isfinite(e) & torch.isfinite(f).flatten(1).all(1)
                lp[finite] = torch.where(ok, -e / self.energy.kT, torch.full_like(e, -math.inf))
                g[finite] = torch.where(ok[:, None, None], f / self.energy.kT, torch.zeros_like(f))
            lps.append(lp)
            grads.append(remove_mean(g) if self.mean_free else g)
        return torch.cat(lps), torch.cat(grads)


def multinomial_resample(log_w: torch.Tensor, n: int | None = None, *,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices ``(n,)`` drawn with replacement with probabilities ``softmax(log_w)``.

    Multinomial rather than systematic resampling: the genealogy error estimate of
    :func:`smc` (Lee and Whiteley 2018) is derived for it.
    """
    n = len(log_w) if n is None else n
    return torch.multinomial(torch.softmax(log_w.double(), 0), n, replacement=True, generator=generator)


