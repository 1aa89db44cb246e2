r"""Correction: from proposal samples to the exact Boltzmann distribution.

A trained sampler proposes configurations from some density ``q``; the target is
:math:`p(x) \propto \exp(-E(x)/kT)`. This module turns proposals into samples of
``p`` (asymptotically exact) and estimates :math:`\log Z = \log \int e^{-E/kT} dx`:

* :func:`mala` — Metropolis-adjusted Langevin chains, batched, one step size per
  chain adapted towards a target acceptance during warm-up only (then fixed, so
  the chains are exactly ``p``-invariant);
* :func:`smc` — annealed sequential Monte Carlo from ``q`` to ``p`` along
  :math:`\pi_\beta \propto q^{1-\beta} p^\beta`, exponents chosen adaptively by the
  conditional ESS, multinomial resampling when the ESS falls, MALA rejuvenation at
  every stage (step sizes adapted between stages, never within one), log Z from
  the incremental weights. With a good ``q`` it reduces to importance
  resampling plus MALA at the target;
* :func:`relax` — *not exact*: capped steepest descent for configurations with
  huge forces (near-overlaps), then unadjusted Langevin steps. Cheap; removes
  overlaps; its samples are biased by the step size.

Only :meth:`~idem_md.energies.base.Energy.energy_and_forces` of the target is
called, so ASE and OpenMM targets work; every call is counted in the results.
The proposal enters through :class:`Proposal`: ``log_prob_and_grad(x)`` (and,
for :func:`smc` without given samples, ``sample_with_log_prob(n)``).

Units: positions in the energy's length unit, shape ``(B, n, d)``; log densities
in nats; step sizes in length unit squared per unit of ``log p`` gradient
(``x' = x + eps grad log p + sqrt(2 eps) xi``). Particle systems
(``energy.is_particle_system``) are sampled on the centre-of-mass-free subspace,
where ``q`` must be normalised too.

Examples
--------
>>> import torch
>>> from idem_md import get_energy
>>> gmm = get_energy("gmm40")
>>> q = GaussianProposal(torch.zeros(1, 2), 40.0)
>>> res = smc(gmm, q, 256, mcmc_steps=2, generator=torch.Generator().manual_seed(0))
>>> res.positions.shape, res.beta_schedule[-1]
(torch.Size([256, 1, 2]), 1.0)
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from .dem.sde import remove_mean
from .energies.base import Energy
from .metrics import effective_sample_size

__all__ = [
    "Proposal",
    "GaussianProposal",
    "BoltzmannTarget",
    "MALAResult",
    "mala",
    "SMCResult",
    "smc",
    "RelaxResult",
    "relax",
    "multinomial_resample",
    "CORRECTIONS",
]

#: Names accepted by ``idem-md sample --correct``.
CORRECTIONS = ("none", "relax", "mala", "smc")

LogDensityFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # x (B,n,d) -> ((B,), (B,n,d))


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
        self.dof = (n - 1) * d if mean_free else n * d

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


# ------------------------------------------------------------------ weights
def multinomial_resample(log_w: torch.Tensor, n: int | None = None, *,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices ``(n,)`` drawn with replacement with probabilities ``softmax(log_w)``.

    Multinomial rather than systematic resampling: the genealogy error estimate of
    :func:`smc` (Lee and Whiteley 2018) is derived for it.
    """
    n = len(log_w) if n is None else n
    return torch.multinomial(torch.softmax(log_w.double(), 0), n, replacement=True, generator=generator)


# --------------------------------------------------------------------- MALA
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
        False: accept every proposal (unadjusted Langevin, *biased*; used by :func:`relax`);
        the acceptance probability still drives the warm-up adaptation.
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
        mean_fwd = x + e3 * grad
        prop = mean_fwd + (2 * e3).sqrt() * noise
        lp_p, grad_p, *aux_p = log_density(prop)
        mean_bwd = prop + e3 * grad_p
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
            accepted += acc.double()
    counted = max(n_steps - warmup, 0) if n_steps > warmup else 0
    per_chain = accepted / counted if counted else torch.full((B,), float("nan"), dtype=torch.float64)
    return MALAResult(x, lp, eps, float(per_chain.mean()) if counted else float("nan"), per_chain, n_steps, grad, aux)


# ---------------------------------------------------------------------- SMC
@dataclass
class SMCResult:
    """Particles and estimates from :func:`smc`.

    Attributes
    ----------
    positions : torch.Tensor
        ``(N, n, d)`` final particles (energy's length unit).
    log_weights : torch.Tensor
        ``(N,)`` normalised log weights (``log_softmax``); all ``-log N`` after a final resampling.
    energies : torch.Tensor
        ``(N,)`` energies of the particles (energy unit).
    log_Z : float
        Estimate of ``log int exp(-E/kT) dx`` (nats; lengths in the energy's unit; on the
        centre-of-mass-free subspace for particle systems).
    log_Z_error : float
        Standard error of ``log_Z`` from the particles' genealogy (:func:`_log_z_error`).
    beta_schedule : list of float
        Tempering exponents, from the first positive one to 1.
    ess_per_stage : list of float
        Normalised ESS after each reweighting, before any resampling.
    acceptance_per_stage : list of float
        Mean MALA acceptance of the moves after each stage (``nan`` without moves).
    resampled_at : list of int
        Stages (0-based) after which the particles were resampled.
    ancestors : torch.Tensor
        ``(N,)`` index of each particle's initial ancestor (for genealogy error bars,
        :func:`idem_md.observables.estimate`).
    importance_ess : float
        ESS of the plain importance weights ``p~/q`` of the initial proposals (the quality of ``q``).
    n_energy_evaluations : int
        Target energy-and-force evaluations spent (the proposals' energies included).
    n_proposal_evaluations : int
        Evaluations of ``log q`` and its gradient during the moves.
    n_failed_proposals : int
        Initial proposals dropped because their position or ``log q`` was not finite.
    """

    positions: torch.Tensor
    log_weights: torch.Tensor
    energies: torch.Tensor
    log_Z: float
    log_Z_error: float
    beta_schedule: list[float]
    ess_per_stage: list[float]
    acceptance_per_stage: list[float]
    resampled_at: list[int]
    ancestors: torch.Tensor
    importance_ess: float
    n_energy_evaluations: int
    n_proposal_evaluations: int
    n_failed_proposals: int

    @property
    def ess(self) -> float:
        """Normalised ESS of the final weights (1 after a final resampling)."""
        return effective_sample_size(self.log_weights)

    def summary(self) -> dict:
        """Plain-data summary (no per-particle arrays), e.g. for sample-file metadata."""
        return {"method": "smc", "log_Z": self.log_Z, "log_Z_error": self.log_Z_error, "ess": self.ess,
                "importance_ess": self.importance_ess, "n_stages": len(self.beta_schedule),
                "beta_schedule": self.beta_schedule, "ess_per_stage": self.ess_per_stage,
                "acceptance_per_stage": self.acceptance_per_stage, "resampled_at": self.resampled_at,
                "n_energy_evaluations": self.n_energy_evaluations,
                "n_proposal_evaluations": self.n_proposal_evaluations, "n_failed_proposals": self.n_failed_proposals}


def _conditional_ess(log_W: torch.Tensor, delta: torch.Tensor, step: float) -> float:
    """CESS of the increment ``exp(step * delta)`` under normalised weights ``exp(log_W)``, in [0, 1]."""
    inc = step * delta
    return float(torch.exp(2 * torch.logsumexp(log_W + inc, 0) - torch.logsumexp(log_W + 2 * inc, 0)))


def _next_beta(log_W: torch.Tensor, delta: torch.Tensor, beta: float, cess_target: float) -> float:
    """Largest next exponent with conditional ESS >= ``cess_target`` (bisection), at most 1."""
    if _conditional_ess(log_W, delta, 1.0 - beta) >= cess_target:
        return 1.0
    lo, hi = 0.0, 1.0 - beta
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _conditional_ess(log_W, delta, mid) >= cess_target else (lo, mid)
    return beta + max(lo, 1e-9)


def _log_z_error(log_w: torch.Tensor, eve: torch.Tensor, n_resampled: int) -> float:
    """Standard error of ``log Z`` from the genealogy (Lee and Whiteley 2018, Chan and Lai 2013).

    ``Var(Z^)/Z^2 ~ 1 - (N/(N-1))^(r+1) (1 - sum_k S_k^2)``, ``S_k`` the final weight of the
    particles descending from initial particle ``k``, ``r`` resampling events; the delta method
    turns it into the error of ``log Z^``. Plain importance sampling (``r = 0``) gives the usual
    ``(N sum w^2 - 1) / (N - 1)``. It grows when the genealogy collapses onto few ancestors.
    """
    N = len(log_w)
    S = torch.zeros(N, dtype=torch.float64).index_add_(0, eve, torch.softmax(log_w.double(), 0))
    rel_var = 1.0 - (N / (N - 1)) ** (n_resampled + 1) * (1.0 - float((S * S).sum()))
    return math.sqrt(max(rel_var, 0.0))


class _Tempered:
    """``log pi_beta = beta log p~ + (1 - beta) log q`` for :func:`mala`.

    The aux values carried with each chain are ``[log p~, log q, grad log p~, grad log q]``
    (``(B, 2 + 2 dim)``), so that a new ``beta`` needs no new evaluation (:meth:`state`). At
    ``beta = 1`` ``q`` is not evaluated (its entries are NaN and zero).
    """

    def __init__(self, target: BoltzmannTarget, proposal: Proposal, beta: float):
        self.target, self.proposal, self.beta = target, proposal, beta
        self.n_proposal_evaluations = 0

    def __call__(self, x: torch.Tensor):
        lp, gp = self.target(x)
        if self.beta >= 1.0:  # q no longer enters: skip its (expensive) evaluation
            lq, gq = torch.full_like(lp, math.nan), torch.zeros_like(gp)
        else:
            lq, gq = self.proposal_terms(x)
        return self.state(torch.cat([lp[:, None], lq[:, None], gp.flatten(1), gq.flatten(1)], 1), x.shape)

    def proposal_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lq, gq = self.proposal.log_prob_and_grad(x)
        self.n_proposal_evaluations += len(x)
        lq, gq = lq.detach().to(x), gq.detach().to(x)
        return lq, remove_mean(gq) if self.target.mean_free else gq

    def state(self, aux: torch.Tensor, shape: torch.Size):
        """``(log pi_beta, grad log pi_beta, aux)`` from the carried aux values."""
        dim = (aux.shape[1] - 2) // 2
        lp, lq = aux[:, 0], aux[:, 1]
        gp, gq = aux[:, 2:2 + dim].reshape(shape), aux[:, 2 + dim:].reshape(shape)
        b = self.beta
        if b >= 1.0:
            return lp, gp, aux
        logpi = torch.where(torch.isfinite(lq), b * lp + (1 - b) * lq, torch.full_like(lp, -math.inf))
        return logpi, b * gp + (1 - b) * gq, aux


def smc(energy: Energy, proposal: Proposal, n: int | None = None, *,
        samples: tuple[torch.Tensor, torch.Tensor] | None = None, mcmc_steps: int = 10, final_mcmc_steps: int | None = None,
        cess_target: float = 0.9, ess_threshold: float = 0.5, anneal: bool = True, resample_final: bool = True,
        target_accept: float = 0.6, max_stages: int = 1000,
        generator: torch.Generator | None = None, progress: bool = False) -> SMCResult:
    r"""Annealed SMC from the proposal ``q`` to ``p ~ exp(-E/kT)``, with log Z.

    Stage k reweights by ``(p~/q)^(beta_k - beta_{k-1})`` with ``beta_k`` chosen by bisection
    so that the conditional ESS equals ``cess_target``; resamples (multinomial) when the
    ESS falls below ``ess_threshold``; then moves every particle by ``mcmc_steps`` MALA
    steps targeting ``pi_beta ~ q^(1-beta) p^beta`` (one step size for the population,
    adapted after each stage towards ``target_accept``). ``log Z = sum_k log sum_i W_i (p~/q)_i^(dbeta)``.

    Parameters
    ----------
    energy : Energy
        The target.
    proposal : Proposal
        ``q``: normalised (on the mean-free subspace for particle systems), with
        ``log_prob_and_grad`` (and ``sample_with_log_prob`` when ``samples`` is not given).
    n : int, optional
        Number of particles drawn from ``proposal`` (omit when giving ``samples``).
    samples : tuple, optional
        ``(x (N, n, d), log_q (N,))`` proposals already drawn.
    mcmc_steps : int
        MALA steps per stage (0: importance sampling and resampling only).
    final_mcmc_steps : int, optional
        Extra MALA steps at ``beta = 1`` (default ``mcmc_steps``), in blocks of ``mcmc_steps``
        with step-size adaptation between blocks.
    anneal : bool
        False: a single stage straight to ``beta = 1`` (importance resampling, then moves).
    resample_final : bool
        Return equally weighted particles (resampled at the end when the weights are unequal).
    """
    if (n is None) == (samples is None):
        raise ValueError("give exactly one of n (particles to draw from proposal) and samples=(x, log_q)")
    for name, v in (("mcmc_steps", mcmc_steps), ("max_stages", max_stages)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if not 0 < cess_target < 1:
        raise ValueError(f"cess_target must be in (0, 1), got {cess_target!r}")
    if not 0 <= ess_threshold <= 1:
        raise ValueError(f"ess_threshold must be in [0, 1], got {ess_threshold!r}")
    target = BoltzmannTarget(energy)
    if samples is None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be an int >= 2, got {n!r}")
        samples = proposal.sample_with_log_prob(n, generator=generator)
    x, lq = samples
    x, lq = torch.as_tensor(x).detach().double().cpu(), torch.as_tensor(lq).detach().double().cpu()
    if x.ndim != 3 or lq.shape != (x.shape[0],):
        raise ValueError(f"samples must be (x (N, n, d), log_q (N,)), got shapes {tuple(x.shape)} and {tuple(lq.shape)}")
    ok = torch.isfinite(lq) & torch.isfinite(x).flatten(1).all(1)
    n_failed = int((~ok).sum())
    x, lq = x[ok], lq[ok]
    if len(x) < 2:
        raise ValueError(f"only {len(x)} of {len(ok)} proposals have a finite position and log q; SMC needs >= 2")
    if target.mean_free:
        x = remove_mean(x)
    lp, gp = target(x)
    aux = torch.cat([lp[:, None], lq[:, None], gp.flatten(1), torch.full_like(gp.flatten(1), math.nan)], 1)
    N = len(x)
    log_w = torch.zeros(N, dtype=torch.float64)
    importance_ess = effective_sample_size(torch.nan_to_num(lp - lq, nan=-math.inf)) if bool(torch.isfinite(lp).any()) else 0.0
    have_grad_q = False
    beta, log_z, eps = 0.0, 0.0, None
    betas, esss, accs, resampled = [], [], [], []
    eve = torch.arange(N)  # index of each particle's initial ancestor
    log_z_err = float("nan")
    n_prop_evals = 0
    final_steps = mcmc_steps if final_mcmc_steps is None else final_mcmc_steps
    while beta < 1.0:
        if len(betas) >= max_stages:
            raise RuntimeError(f"SMC did not reach beta = 1 in max_stages={max_stages} stages (beta = {beta:.3g}); "
                               "the proposal is far from the target: raise max_stages or lower cess_target")
        delta = torch.nan_to_num(aux[:, 0] - aux[:, 1], nan=-math.inf)  # log p~ - log q
        log_W = torch.log_softmax(log_w, 0)
        new_beta = _next_beta(log_W, delta, beta, cess_target) if anneal else 1.0
        inc = torch.nan_to_num((new_beta - beta) * delta, nan=-math.inf)
        if not bool(torch.isfinite(log_W + inc).any()):
            raise ValueError("every particle has zero target density (all energies non-finite)")
        log_z += float(torch.logsumexp(log_W + inc, 0))
        log_w, beta = log_w + inc, new_beta
        betas.append(beta)
        esss.append(effective_sample_size(log_w))
        if beta >= 1.0:
            log_z_err = _log_z_error(log_w, eve, len(resampled))
        if esss[-1] < ess_threshold or (beta >= 1.0 and resample_final and esss[-1] < 1.0 - 1e-12):
            idx = multinomial_resample(log_w, generator=generator)
            x, aux, eve, log_w = x[idx], aux[idx], eve[idx], torch.zeros(N, dtype=torch.float64)
            resampled.append(len(betas) - 1)
        steps = mcmc_steps if beta < 1.0 else final_steps
        acc_stage = []
        dens = _Tempered(target, proposal, beta)
        if steps and beta < 1.0 and not have_grad_q:  # first moves at beta < 1: grad log q at the particles
            aux[:, 2 + x[0].numel():] = dens.proposal_terms(x)[1].flatten(1)
            have_grad_q = True
        for block in range(math.ceil(steps / max(mcmc_steps, 1)) if steps else 0):
            res = mala(dens, x, n_steps=min(mcmc_steps, steps - block * mcmc_steps), step_size=eps,
                       mean_free=target.mean_free, generator=generator, state=dens.state(aux, x.shape),
                       target_accept=target_accept)
            x, aux = res.positions, res.aux
            # One step size for the population, adapted between blocks from the mean acceptance: a
            # per-particle step size adapted on a particle's own history correlates with its position
            # and biases the population (measured on GMM-40: log Z +0.14, mode TV 0.09 instead of 0.03).
            eps = float(res.step_size[0]) * math.exp(2.0 * (res.acceptance_rate - target_accept))
            acc_stage.append(res.acceptance_rate)
        n_prop_evals += dens.n_proposal_evaluations
        accs.append(sum(acc_stage) / len(acc_stage) if acc_stage else float("nan"))
        if progress:
            print(f"SMC stage {len(betas)}: beta {beta:.4g}, ESS {esss[-1]:.3f}, acceptance {accs[-1]:.2f}",
                  file=sys.stderr, flush=True)
    return SMCResult(x, torch.log_softmax(log_w, 0), -aux[:, 0] * energy.kT, log_z, log_z_err, betas, esss, accs,
                     resampled, eve, importance_ess, target.n_evaluations, n_prop_evals, n_failed)


# -------------------------------------------------------------------- relax
@dataclass
class RelaxResult:
    """Configurations after :func:`relax` (*not* exact samples of p).

    Attributes
    ----------
    positions : torch.Tensor
        ``(B, n, d)``.
    energies : torch.Tensor
        ``(B,)`` in the energy unit.
    n_minimised : int
        Configurations whose forces exceeded ``max_force`` and were minimised first.
    n_energy_evaluations : int
        Energy-and-force evaluations spent.
    acceptance_rate : float
        Metropolis acceptance the Langevin steps *would* have had (a bias diagnostic: near 1 means small bias).
    """

    positions: torch.Tensor
    energies: torch.Tensor
    n_minimised: int
    n_energy_evaluations: int
    acceptance_rate: float

    def summary(self) -> dict:
        return {"method": "relax", "n_minimised": self.n_minimised, "n_energy_evaluations": self.n_energy_evaluations,
                "would_be_acceptance": self.acceptance_rate}


def relax(energy: Energy, x: torch.Tensor, *, langevin_steps: int = 100, max_force: float = 1e3,
          minimize_steps: int = 200, max_displacement: float | None = None,
          generator: torch.Generator | None = None) -> RelaxResult:
    r"""Remove near-overlaps: capped steepest descent, then unadjusted Langevin (biased, cheap).

    Configurations whose largest per-coordinate force exceeds ``max_force`` (in kT per
    length unit) first take up to ``minimize_steps`` steepest-descent steps, each
    displacement capped at ``max_displacement`` (default 2% of the configuration's
    coordinate spread), until the forces fall below it. Then every configuration takes
    ``langevin_steps`` steps of ``x += eps F/kT + sqrt(2 eps) xi`` with no Metropolis test,
    the step size per chain adapted (first half) towards a would-be acceptance of 0.6.
    """
    for name, v in (("langevin_steps", langevin_steps), ("minimize_steps", minimize_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if not max_force > 0:
        raise ValueError(f"max_force must be > 0 (kT per length unit), got {max_force!r}")
    target = BoltzmannTarget(energy)
    x = torch.as_tensor(x).detach().double().cpu()
    if target.mean_free:
        x = remove_mean(x)
    lp, g = target(x)
    cap = (0.02 * x.flatten(1).std(1)).clamp_min(1e-6) if max_displacement is None else torch.full((len(x),), float(max_displacement), dtype=x.dtype)
    too_big = g.flatten(1).abs().amax(1) > max_force
    n_min = int(too_big.sum())
    active = too_big.clone()
    for _ in range(minimize_steps):
        if not bool(active.any()):
            break
        ga = g[active]
        scale = torch.minimum(torch.ones_like(cap[active]), cap[active] / ga.flatten(1).abs().amax(1).clamp_min(1e-30))
        xa = x[active] + scale[:, None, None] * ga  # steepest descent on E: along F / kT
        lpa, gnew = target(xa)
        better = lpa >= lp[active]
        idx = active.nonzero().flatten()
        x[idx[better]], lp[idx[better]], g[idx[better]] = xa[better], lpa[better], gnew[better]
        cap[idx[~better]] *= 0.5  # overshoot: shrink that configuration's step
        active = g.flatten(1).abs().amax(1) > max_force
    res = mala(target, x, n_steps=langevin_steps, warmup=langevin_steps // 2, metropolis=False,
               mean_free=target.mean_free, generator=generator, state=(lp, g))
    return RelaxResult(res.positions, -res.log_density * energy.kT, n_min, target.n_evaluations, res.acceptance_rate)
