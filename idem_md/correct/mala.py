"""Batched Metropolis-adjusted Langevin chains (and their unadjusted variant, for relax)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..dem.sde import remove_mean
from .targets import LogDensityFn

__all__ = ["MALAResult", "mala"]


@dataclass
class MALAResult:
    """Chains after :func:`mala`.

    Attributes
    ----------
    positions : torch.Tensor
        ``(B, n, d)`` final states.
    log_density : torch.Tensor
        ``(B,)`` log density of the final states (nats).
    step_size : torch.Tensor
        ``(B,)`` per-chain step sizes at the end.
    acceptance_rate : float
        Mean acceptance over chains and the post-warm-up steps (all steps when there was no warm-up).
    acceptance_per_chain : torch.Tensor
        ``(B,)`` the same per chain.
    n_steps : int
        Steps taken (warm-up included).
    """

    positions: torch.Tensor
    log_density: torch.Tensor
    step_size: torch.Tensor
    acceptance_rate: float
    acceptance_per_chain: torch.Tensor
    n_steps: int
    grad: torch.Tensor = field(repr=False, default=None)  # (B, n, d) gradient at the final states
    aux: torch.Tensor = field(repr=False, default=None)  # (B, m) the density's extra values there


def _default_step_size(x: torch.Tensor, grad: torch.Tensor) -> float:
    """A first guess shared by all chains: a step moving ~1% of the population's spread.

    One value for the whole population on purpose: a step size computed from a chain's own
    state makes the proposal asymmetric in a way the Metropolis ratio does not see (bias).
    """
    spread = float(x.flatten(1).std(0).mean().clamp_min(1e-6))  # per-coordinate spread over the population
    gnorm = float(grad.flatten(1).abs().median().clamp_min(1e-12))
    return min((0.1 * spread) ** 2, 0.01 * spread / gnorm)


def _drift(grad: torch.Tensor, eps: torch.Tensor, metropolis: bool) -> torch.Tensor:
    """The Langevin drift: ``grad`` under a Metropolis test, else tamed ``grad / (1 + eps |grad|)`` (per chain)."""
    if metropolis:
        return grad
    return grad / (1.0 + eps * grad.flatten(1).norm(dim=1))[:, None, None]


def mala(log_density: LogDensityFn, x: torch.Tensor, *, n_steps: int, step_size: float | torch.Tensor | None = None,
         warmup: int = 0, target_accept: float = 0.6, mean_free: bool = False,
         generator: torch.Generator | None = None, state: tuple | None = None, metropolis: bool = True
         ) -> MALAResult:
    r"""Batched Metropolis-adjusted Langevin chains for ``log_density``.

    Proposal ``x' = x + eps grad log pi(x) + sqrt(2 eps) xi`` (``xi`` mean-free for
    particle systems), accepted with the Metropolis-Hastings ratio. During the first
    ``warmup`` steps each chain's ``eps`` is adapted (Robbins-Monro on ``log eps``,
    driven by its acceptance probability) towards ``target_accept``; afterwards the
    kernel is fixed and leaves ``pi`` exactly invariant.

    Parameters
    ----------
    log_density : callable
        ``x (B, n, d) -> (log pi (B,), grad (B, n, d))``, e.g. a :class:`BoltzmannTarget`; it may
        return a third element ``aux`` ``(B, m)`` (per-state values carried along with the chains).
    x : torch.Tensor
        ``(B, n, d)`` starting states (float64 recommended).
    n_steps : int
        Total steps, ``>= warmup``.
    step_size : float or torch.Tensor, optional
        Initial ``eps`` (scalar or ``(B,)``); default from each chain's spread and gradient.
    warmup : int
        Adaptation steps (excluded from the reported acceptance).
    state : tuple, optional
        What ``log_density(x)`` returns, when already known (saves one evaluation).
    metropolis : bool
        False: accept every proposal with a finite density (unadjusted Langevin, *biased*; used
        by :func:`relax`), with the tamed drift ``g / (1 + eps |g|)`` (Hutzenthaler et al. 2012)
        so that steep walls (a quartic double well, an LJ overlap) cannot throw a chain to
        infinity; the Metropolis acceptance probability of that proposal still drives the
        warm-up adaptation and is what ``acceptance_rate`` reports (a bias diagnostic).
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative int, got {n_steps!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup <= n_steps:
        raise ValueError(f"warmup must be an int in [0, n_steps={n_steps}], got {warmup!r}")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
    lp, grad, *aux = state if state is not None else log_density(x)
    aux = aux[0] if aux else torch.zeros(x.shape[0], 0, dtype=x.dtype)
    B = x.shape[0]
    eps = _default_step_size(x, grad) if step_size is None else step_size
    eps = torch.as_tensor(eps, dtype=x.dtype).expand(B).clone()
    if not bool((eps > 0).all()):
        raise ValueError("step_size must be > 0")
    accepted = torch.zeros(B, dtype=torch.float64)
    for i in range(n_steps):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        if mean_free:
            noise = remove_mean(noise)
        e3 = eps[:, None, None]
        mean_fwd = x + e3 * _drift(grad, eps, metropolis)
        prop = mean_fwd + (2 * e3).sqrt() * noise
        lp_p, grad_p, *aux_p = log_density(prop)
        mean_bwd = prop + e3 * _drift(grad_p, eps, metropolis)
        log_fwd = -(prop - mean_fwd).pow(2).flatten(1).sum(1) / (4 * eps)
        log_bwd = -(x - mean_bwd).pow(2).flatten(1).sum(1) / (4 * eps)
        log_ratio = lp_p - lp + log_bwd - log_fwd
        log_ratio = torch.where(torch.isfinite(lp_p), log_ratio, torch.full_like(log_ratio, -math.inf))
        log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)
        accept_prob = log_ratio.clamp(max=0.0).exp()
        u = torch.rand(B, generator=generator, dtype=torch.float64).to(x)
        acc = (u < accept_prob) if metropolis else torch.isfinite(lp_p)
        x = torch.where(acc[:, None, None], prop, x)
        lp = torch.where(acc, lp_p, lp)
        grad = torch.where(acc[:, None, None], grad_p, grad)
        if aux_p:
            aux = torch.where(acc[:, None], aux_p[0], aux)
        if i < warmup:
            gain = 1.0 / (i + 1) ** 0.6
            eps = eps * torch.exp(gain * (accept_prob - target_accept))
        else:
            accepted += acc.double() if metropolis else accept_prob.double()
    counted = max(n_steps - warmup, 0) if n_steps > warmup else 0
    per_chain = accepted / counted if counted else torch.full((B,), float("nan"), dtype=torch.float64)
    return MALAResult(x, lp, eps, float(per_chain.mean()) if counted else float("nan"), per_chain, n_steps, grad, aux)


