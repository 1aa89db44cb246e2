"""The 40-mode Gaussian mixture benchmark GMM-40 (2D)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .base import Energy

__all__ = ["GaussianMixture", "gmm40_means"]


def gmm40_means(n_modes: int = 40, dim: int = 2, loc_scaling: float = 40.0) -> torch.Tensor:
    """Mode means of the benchmark: ``(rand(n, dim) - 0.5) * 2 * loc_scaling`` right after
    ``torch.manual_seed(0)``, drawn from a private generator so global RNG state is untouched.

    >>> gmm40_means()[0]
    tensor([-0.2995, 21.4577])
    """
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n_modes, dim, generator=g) - 0.5) * 2 * loc_scaling


class GaussianMixture(Energy):
    r"""Equally weighted mixture of isotropic Gaussians, :math:`E(x) = -\log p(x)` (kT = 1).

    .. math::

        p(x) = \frac{1}{M} \sum_{k=1}^{M} \mathcal N(x; \mu_k, \sigma^2 I)

    The benchmark GMM-40 has ``M = 40`` means from :func:`gmm40_means` and
    ``sigma = softplus(1) = 1.3133``. The energy is normalised, so
    ``log_prob`` is the exact log density.

    Parameters
    ----------
    means : torch.Tensor
        ``(M, dim)`` mode means.
    std : float
        Standard deviation of every mode on every axis.

    Examples
    --------
    >>> gmm = GaussianMixture.gmm40()
    >>> gmm.sample(5).shape
    torch.Size([5, 2])
    """

    def __init__(self, means: torch.Tensor, std: float, kT: float = 1.0, name: str = "gmm"):
        means = torch.as_tensor(means, dtype=torch.get_default_dtype())
        if means.ndim != 2:
            raise ValueError(f"means must have shape (n_modes, dim), got {tuple(means.shape)}")
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std!r}")
        super().__init__(1, means.shape[1], kT, name)
        self.register_buffer("means", means)
        self.std = float(std)

    @classmethod
    def gmm40(cls, kT: float = 1.0) -> "GaussianMixture":
        """The iDEM GMM-40 benchmark; its energy is ``-kT log p(x)``, so ``exp(-E/kT)`` is the mixture at any ``kT``."""
        return cls(gmm40_means(), std=F.softplus(torch.tensor(1.0)).item(), kT=kT, name="gmm40")

    @property
    def is_particle_system(self) -> bool:
        return False

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    def _identity_extra(self) -> dict[str, Any]:
        return dict(n_modes=self.n_modes, std=self.std, means_sum=float(self.means.double().sum()))

    def _component_logits(self, x2: torch.Tensor) -> torch.Tensor:
        """``(B, M)`` log of each weighted component density at ``x2`` ``(B, dim)``.

        Squared distances by ``|x|^2 - 2 x.mu + |mu|^2`` (one matmul, no ``(B, M, dim)`` tensor).
        """
        mu = self.means.to(x2.dtype)
        d = x2.shape[1]
        sq = (x2 * x2).sum(1, keepdim=True) - 2.0 * x2 @ mu.T + (mu * mu).sum(1)  # (B, M)
        const = -d * math.log(self.std) - 0.5 * d * math.log(2 * math.pi) - math.log(self.n_modes)
        return -0.5 * sq.clamp_min(0.0) / self.std**2 + const

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return -self.kT * torch.logsumexp(self._component_logits(x.reshape(x.shape[0], self.dim)), dim=1)

    def _energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x2 = x.reshape(x.shape[0], self.dim)
        logits = self._component_logits(x2)
        logp = torch.logsumexp(logits, dim=1)
        w = torch.exp(logits - logp[:, None])  # (B, M) responsibilities, rows sum to 1
        score = (w @ self.means.to(x2.dtype) - x2) / self.std**2  # grad log p = sum_k w_k (mu_k - x) / s^2
        return -self.kT * logp, (self.kT * score).reshape(x.shape)

    def noised_score(self, x: torch.Tensor, h: torch.Tensor | float) -> torch.Tensor:
        """Exact score of the noised density ``p_h = p * N(0, h I)`` at ``x``, the quantity DEM estimates.

        The convolution of the mixture with ``N(0, h I)`` is the same mixture with variance
        ``std^2 + h``, so its score is known in closed form (at ``kT = 1``; for other ``kT`` the
        Boltzmann density of this energy is a different function).

        Parameters
        ----------
        x : torch.Tensor
            ``(B, dim)`` positions (reduced length).
        h : torch.Tensor or float
            Noise variance (reduced length squared): a scalar or ``(B,)``.

        Returns
        -------
        torch.Tensor
            ``(B, dim)`` in inverse reduced length.

        Examples
        --------
        >>> gmm = GaussianMixture(torch.zeros(1, 2), std=1.0)
        >>> gmm.noised_score(torch.tensor([[2.0, 0.0]]), 3.0)
        tensor([[-0.5000, -0.0000]])
        """
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        h = torch.as_tensor(h, dtype=x.dtype, device=x.device)
        var = (self.std**2 + h).reshape(-1, 1)  # (B or 1, 1)
        diff = x[:, None, :] - self.means.to(x)[None]  # (B, M, dim)
        w = torch.softmax(-0.5 * (diff * diff).sum(-1) / var, dim=1)  # equal weights, equal variances
        return -(w[..., None] * diff).sum(1) / var

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact samples, ``(n, dim)``."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        k = torch.randint(self.n_modes, (n,), generator=generator, device=self.means.device)
        z = torch.randn(n, self.spatial_dim, generator=generator, device=self.means.device, dtype=self.means.dtype)
        return self.means[k] + self.std * z
