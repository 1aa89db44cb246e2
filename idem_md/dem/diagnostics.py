r"""Diagnostics of a learned score: the Jacobian bound every true noised score obeys.

For the VE process ``p_t = p_0 * N(0, h(t) I)`` and

.. math::

    \nabla^2 \log p_t(x) = -\frac{I}{h(t)} + \frac{\mathrm{Cov}[x_0 \mid x_t = x]}{h(t)^2} \succeq -\frac{I}{h(t)},

so the symmetric part of the score's Jacobian has no eigenvalue below ``-1/h(t)``. A learned
field that breaks the bound contracts faster than any noised density can; where it does, the
probability-flow ODE is stiff and its density meaningless. :func:`jacobian_bound_violation`
measures how often and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .schedule import GeometricNoiseSchedule
from .sde import remove_mean

__all__ = ["JacobianBoundCheck", "jacobian_bound_violation"]


@dataclass(frozen=True)
class JacobianBoundCheck:
    """Result of :func:`jacobian_bound_violation` at one time ``t``.

    Attributes
    ----------
    t : float
        Diffusion time.
    bound : float
        ``-1 / h(t)`` (1 / working length squared).
    violation_fraction : float
        Share of points whose smallest eigenvalue of the symmetrised Jacobian is below the bound.
    median_min_eigenvalue : float
        Median over points of that smallest eigenvalue (same unit).
    n_points : int
    """

    t: float
    bound: float
    violation_fraction: float
    median_min_eigenvalue: float
    n_points: int


def jacobian_bound_violation(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                             t: float, schedule: GeometricNoiseSchedule, *, mean_free: bool = False,
                             tolerance: float = 1e-6) -> JacobianBoundCheck:
    """How often the symmetrised Jacobian of ``score_fn(., t)`` has an eigenvalue below ``-1/h(t)``.

    Parameters
    ----------
    score_fn : callable
        ``(x (B, n, d), t (B,)) -> (B, n, d)`` in working coordinates.
    x : torch.Tensor
        ``(B, n, d)`` points (e.g. forward-noised buffer samples at time ``t``).
    t : float
        Diffusion time in (0, 1].
    mean_free : bool
        Particle systems: the Jacobian restricted to the centre-of-mass-free subspace.
    tolerance : float
        Relative slack below the bound before a point counts as violating it.
    """
    if not 0 < t <= 1:
        raise ValueError(f"t must be in (0, 1], got {t!r}")
    if x.ndim != 3 or len(x) < 1:
        raise ValueError(f"x must have shape (B, n, d) with B >= 1, got {tuple(x.shape)}")
    B, D = x.shape[0], x[0].numel()
    h = float(schedule.h(torch.tensor(t, dtype=torch.float64)))
    tt = torch.full((B,), t, dtype=x.dtype, device=x.device)
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        s = score_fn(xg, tt)
        if mean_free:
            s = remove_mean(s)
        flat = s.flatten(1)  # (B, D)
        rows = [torch.autograd.grad(flat[:, k].sum(), xg, retain_graph=k < D - 1)[0].flatten(1) for k in range(D)]
    J = torch.stack(rows, 1).double()  # (B, D, D): J[b, k, :] = d s_k / d x
    if mean_free:
        n, d = x.shape[1], x.shape[2]
        P = torch.kron(torch.eye(n) - torch.full((n, n), 1.0 / n), torch.eye(d)).double().to(J.device)  # (D, D)
        J = P @ J @ P
    lam = torch.linalg.eigvalsh(0.5 * (J + J.transpose(1, 2)))[:, 0]  # (B,) smallest eigenvalue
    bound = -1.0 / h
    violated = lam < bound * (1 + tolerance)
    return JacobianBoundCheck(t, bound, float(violated.double().mean()), float(lam.median()), B)
