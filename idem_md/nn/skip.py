r"""A Gaussian skip around any score network: the large-t limit built in.

For the VE process the noised density is ``p_t = p_0 * N(0, h(t) I)``; once ``h(t)`` dwarfs the
data's spread ``sigma_d^2`` it is close to ``N(0, (sigma_d^2 + h) I)`` and its score close to
``-x / (sigma_d^2 + h)``. :class:`GaussianSkipScore` writes the score as

.. math::

    s_\theta(x, t) = -\frac{x}{\sigma_d^2 + h(t)} + c(t)\, F_\theta(x, t), \qquad
    c(t) = \Big(\frac{\sigma_d^2}{\sigma_d^2 + h(t)}\Big)^2,

so that at small t the network ``F`` learns ``s + x / sigma_d^2`` (an O(1) correction) and at
large t its contribution fades like ``(sigma_d^2 / h)^2``, the order of the true score's own
departure from the Gaussian's (``(Cov[x_0 | x_t] - sigma_d^2 I) / h^2`` in the Jacobian). Where
the Monte-Carlo DEM targets are noise, the learned field is the Gaussian score. The symmetrised
Jacobian then respects the bound ``>= -I / h`` that every true noised score obeys
(:mod:`idem_md.dem.diagnostics`) whenever that of ``F`` is above
``-(sigma_d^2 + h) / (sigma_d^2 h)`` (about ``-1 / sigma_d^2`` at large t), instead of above
``-1 / h`` for a bare network. The loss is unchanged (on ``s``), so the targets' large-t noise
reaches ``F``'s gradients scaled down by ``c(t)``.

Examples
--------
>>> import torch
>>> from idem_md.dem.schedule import GeometricNoiseSchedule
>>> from idem_md.nn import build_score_network
>>> net = GaussianSkipScore(build_score_network("mlp", 1, 2, hidden_dim=16), GeometricNoiseSchedule(0.01, 2.0), 1.0)
>>> net(torch.randn(3, 1, 2), torch.rand(3)).shape
torch.Size([3, 1, 2])
"""

from __future__ import annotations

import math

import torch

__all__ = ["GaussianSkipScore"]


class GaussianSkipScore(torch.nn.Module):
    """``s = -x / (sigma_d^2 + h) + (sigma_d^2 / (sigma_d^2 + h))^2 * inner(x, t)``.

    Parameters
    ----------
    inner : torch.nn.Module
        Any score network ``(x (B, n, d), t (B,)) -> (B, n, d)``.
    schedule : GeometricNoiseSchedule
        Gives ``h(t)`` (working units squared).
    sigma_data : float
        Typical spread per coordinate of the target, in working units (> 0); for particle
        systems of the centred configurations.
    """

    def __init__(self, inner: torch.nn.Module, schedule, sigma_data: float):
        super().__init__()
        if not (isinstance(sigma_data, (int, float)) and math.isfinite(sigma_data) and sigma_data > 0):
            raise ValueError(f"sigma_data must be a finite positive float (working units), got {sigma_data!r}")
        self.inner = inner
        self.schedule = schedule
        self.sigma_data = float(sigma_data)

    def bind_schedule(self, schedule) -> None:
        """Pass the sampler's schedule on to the inner network's hook, if it has one."""
        hook = getattr(self.inner, "bind_schedule", None)
        if callable(hook):
            hook(schedule)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])  # (B,)
        var = self.sigma_data**2 + self.schedule.h(t)[:, None, None]  # (B, 1, 1)
        return -x / var + (self.sigma_data**2 / var) ** 2 * self.inner(x, t)
