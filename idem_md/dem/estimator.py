r"""The Monte-Carlo DEM score estimator :math:`S_K(x_t, t)` (iDEM, Eqs. 7-8).

For the VE forward process, the noised density's score is a ratio of Gaussian
expectations of the Boltzmann density (Eq. 7),

.. math::

    \nabla \log p_t(x_t) = \frac{\mathbb E_{x \sim \mathcal N(x_t, h(t) I)}
    [\nabla \exp(-E(x)/kT)]}{\mathbb E_{x \sim \mathcal N(x_t, h(t) I)}[\exp(-E(x)/kT)]},

and iDEM estimates it with K perturbations :math:`x^{(k)} = x_t + \sqrt{h(t)} z_k` (Eq. 8):

.. math::

    S_K(x_t, t) = \sum_k \mathrm{softmax}_k\!\left(-E(x^{(k)})/kT\right) \, F(x^{(k)})/kT,

where ``F = -grad E`` are the forces. Only ``energy_and_forces`` is used, so
targets whose forces come from an engine (ASE, OpenMM) work unchanged.

The K perturbations stream through the energy in chunks; the softmax and the
weighted force average are accumulated online in log space (the same
running-maximum rescaling as a streaming softmax), so memory is bounded by the
chunk size for any K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..energies.base import Energy
from .schedule import GeometricNoiseSchedule

__all__ = ["ScoreEstimate", "estimate_dem_score", "clip_score"]


@dataclass
class ScoreEstimate:
    """Result of :func:`estimate_dem_score`.

    Attributes
    ----------
    score : torch.Tensor
        ``(B, n, d)`` estimated score in working coordinates (1 / working length), clipped.
    ess : torch.Tensor
        ``(B,)`` normalised effective sample size of the K weights, ``(sum w)^2 / (K sum w^2)`` in [1/K, 1]
        (K the row's own count with an adaptive K).
    n_evaluations : int
        Energy evaluations spent (``B * K``; fewer with an adaptive K).
    n_nonfinite : int
        Perturbations whose energy or forces were NaN/inf; they get zero weight.
    n_all_nonfinite : int
        Rows of the batch for which every perturbation was non-finite (their score is set to 0).
    """

    score: torch.Tensor
    ess: torch.Tensor
    n_evaluations: int
    n_nonfinite: int
    n_all_nonfinite: int


def clip_score(score: torch.Tensor, max_norm: float | None, per_particle: bool) -> torch.Tensor:
    """Rescale scores whose norm exceeds ``max_norm``.

    Parameters
    ----------
    score : torch.Tensor
        ``(B, n, d)``.
    max_norm : float or None
        None disables clipping.
    per_particle : bool
        Clip each particle's d-vector (particle systems) or the whole ``n*d`` vector.
    """
    if max_norm is None:
        return score
    if per_particle:
        norm = score.norm(dim=-1, keepdim=True)  # (B, n, 1)
    else:
        norm = score.flatten(1).norm(dim=1).reshape(-1, 1, 1)  # (B, 1, 1)
    return score * (max_norm / norm.clamp_min(max_norm))


def estimate_dem_score(
    energy: Energy,
    x_t: torch.Tensor,
    t: torch.Tensor,
    schedule: GeometricNoiseSchedule,
    num_mc_samples: int,
    *,
    coordinate_scale: float = 1.0,
    score_clip: float | None = None,
    chunk_size: int = 65536,
    generator: torch.Generator | None = None,
    antithetic: bool = False,
    control_variate_scale: float | None = None,
    target_ess: float | None = None,
    min_mc_samples: int = 100,
    proposal_shift: torch.Tensor | None = None,
) -> ScoreEstimate:
    r"""Monte-Carlo DEM estimate of the noised score at ``(x_t, t)`` (Eq. 8).

    Parameters
    ----------
    energy : Energy
        The target; only :meth:`Energy.energy_and_forces` is called.
    x_t : torch.Tensor
        ``(B, n, d)`` noised configurations in working coordinates ``x / coordinate_scale``.
    t : torch.Tensor
        ``(B,)`` diffusion times in [0, 1].
    schedule : GeometricNoiseSchedule
        Gives the perturbation variance ``h(t)`` (working coordinates).
    num_mc_samples : int
        K, the number of perturbations per configuration (the most, with ``target_ess``).
    coordinate_scale : float
        Working coordinates are reduced coordinates divided by this (GMM-40 uses 50).
    score_clip : float or None
        Norm bound applied to the final estimate (per particle for particle systems).
    chunk_size : int
        Maximum number of configurations sent to the energy in one call.
    generator : torch.Generator, optional
        Source of the Gaussian perturbations.
    antithetic : bool
        Draw the perturbations in pairs ``z, -z`` (K must be even): the first-order variation of
        the forces across the perturbation ball cancels within each pair.
    control_variate_scale : float or None
        ``c`` (working length). None: the force form above. A float: the blend
        :math:`\lambda S_K + (1 - \lambda) T_K` with :math:`\lambda = c^2 / (c^2 + h)` and the
        Tweedie form :math:`T_K = \sum_k \mathrm{softmax}_k(-E/kT)\, z_k / \sqrt{h}` of the
        same score (same perturbations and weights, no extra energy calls). Both forms estimate
        the same score, so their difference is a control variate; with ``c`` the target's
        width the blend is exact for any K on a Gaussian target.
    target_ess : float or None
        Adaptive K: perturbations are drawn in rounds of ``min_mc_samples`` and a row stops once
        its effective sample size ``(sum w)^2 / sum w^2`` reaches ``target_ess`` (or K is spent).
    min_mc_samples : int
        Round size of the adaptive K.
    proposal_shift : torch.Tensor or None
        ``(B, n, d)`` offset ``delta`` (working length) of an importance-sampling proposal for the
        perturbations: :math:`x^{(k)} = x_t + \delta + \sqrt{h} \epsilon_k` instead of
        :math:`x_t + \sqrt{h} z_k`, each weight multiplied by the density ratio
        :math:`\mathcal N(z_k; 0, I) / \mathcal N(z_k; \mu, I) = \exp(-z_k \cdot \mu + |\mu|^2 / 2)`
        with :math:`z_k = \mu + \epsilon_k`, :math:`\mu = \delta / \sqrt h`, so the estimate stays
        consistent for any shift. The useful shift is the current network's denoising step
        :math:`\delta = h\, s_\theta(x_t, t)` (Tweedie: the posterior mean of the perturbation), which
        centres the perturbations where the Boltzmann weight is, at large t where the plain ball of
        radius :math:`\sqrt h` mostly misses it. None: no shift (iDEM's estimator).

    Returns
    -------
    ScoreEstimate
    """
    if x_t.ndim != 3 or tuple(x_t.shape[1:]) != (energy.n_particles, energy.spatial_dim):
        raise ValueError(f"x_t must have shape (B, {energy.n_particles}, {energy.spatial_dim}), got {tuple(x_t.shape)}")
    B = x_t.shape[0]
    if t.shape != (B,):
        raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
    _check_options(num_mc_samples, chunk_size, antithetic, control_variate_scale, target_ess, min_mc_samples)
    K = num_mc_samples
    h = schedule.h(t).to(x_t)
    mu = _shift_in_sigma_units(proposal_shift, x_t, h)  # (B, n, d) or None
    state = _StreamState.empty(x_t)
    if target_ess is None:
        _stream(energy, x_t, h, torch.arange(B, device=x_t.device), K, state, chunk_size, coordinate_scale,
                antithetic, generator, mu)
    else:
        while True:
            unmet = (state.k == 0) | (state.s1 * state.s1 < target_ess * state.s2)  # (sum w)^2 / sum w^2 < target
            active = ((state.k < K) & unmet).nonzero().flatten()
            if len(active) == 0:
                break
            k_round = min(min_mc_samples, K - int(state.k[active].min()))
            _stream(energy, x_t, h, active, k_round, state, chunk_size, coordinate_scale, antithetic, generator, mu)
    return _finish(state, energy, x_t, h, coordinate_scale, score_clip, control_variate_scale)


def _shift_in_sigma_units(shift: torch.Tensor | None, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor | None:
    """``mu = delta / sqrt(h)`` (B, n, d), validated; None without a shift."""
    if shift is None:
        return None
    if not isinstance(shift, torch.Tensor) or shift.shape != x_t.shape:
        raise ValueError(f"proposal_shift must be a tensor of the shape of x_t {tuple(x_t.shape)}, got "
                         f"{tuple(shift.shape) if isinstance(shift, torch.Tensor) else type(shift).__name__}")
    mu = shift.to(x_t) / h.sqrt().clamp_min(torch.finfo(h.dtype).tiny)[:, None, None]
    return torch.where(torch.isfinite(mu), mu, torch.zeros_like(mu))  # a non-finite shift falls back to none


def _check_options(K, chunk_size, antithetic, cv_scale, target_ess, min_mc_samples) -> None:
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"num_mc_samples must be a positive int, got {K!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    if not isinstance(antithetic, bool):
        raise TypeError(f"antithetic must be a bool, got {type(antithetic).__name__}")
    if antithetic and K % 2:
        raise ValueError(f"antithetic perturbations come in pairs: num_mc_samples must be even, got {K}")
    if cv_scale is not None and not (isinstance(cv_scale, (int, float)) and math.isfinite(cv_scale) and cv_scale > 0):
        raise ValueError(f"control_variate_scale must be None or a finite positive number, got {cv_scale!r}")
    if target_ess is not None and not (isinstance(target_ess, (int, float)) and math.isfinite(target_ess)
                                       and target_ess >= 1):
        raise ValueError(f"target_ess must be None or a finite number >= 1, got {target_ess!r}")
    if isinstance(min_mc_samples, bool) or not isinstance(min_mc_samples, int) or min_mc_samples < 1:
        raise ValueError(f"min_mc_samples must be a positive int, got {min_mc_samples!r}")
    if antithetic and target_ess is not None and min_mc_samples % 2:
        raise ValueError(f"antithetic perturbations come in pairs: min_mc_samples must be even, got {min_mc_samples}")


@dataclass
class _StreamState:
    """Online softmax state per row: running max ``m``, ``s1 = sum exp(logw - m)``, ``s2 = sum exp(2(logw - m))``,
    the weighted sums of forces ``acc`` and of perturbations ``acc_z``, perturbations used ``k``, non-finite count."""

    m: torch.Tensor  # (B,)
    s1: torch.Tensor  # (B,)
    s2: torch.Tensor  # (B,)
    acc: torch.Tensor  # (B, n, d)
    acc_z: torch.Tensor  # (B, n, d)
    k: torch.Tensor  # (B,) int64
    n_nonfinite: int = 0

    @classmethod
    def empty(cls, x: torch.Tensor) -> "_StreamState":
        B = x.shape[0]
        zeros = torch.zeros(B, dtype=x.dtype, device=x.device)
        return cls(torch.full_like(zeros, -torch.inf), zeros, zeros.clone(), torch.zeros_like(x), torch.zeros_like(x),
                   torch.zeros(B, dtype=torch.long, device=x.device))


def _perturbations(shape, antithetic: bool, generator, x: torch.Tensor) -> torch.Tensor:
    """``(b, kc, n, d)`` standard normal perturbations; with ``antithetic`` the second half negates the first."""
    if not antithetic:
        return torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)
    half = torch.randn((shape[0], shape[1] // 2, *shape[2:]), generator=generator, dtype=x.dtype, device=x.device)
    return torch.cat([half, -half], dim=1)


def _stream(energy: Energy, x_t: torch.Tensor, h: torch.Tensor, idx: torch.Tensor, K: int, st: _StreamState,
            chunk_size: int, coordinate_scale: float, antithetic: bool, generator,
            mu: torch.Tensor | None = None) -> None:
    """Add ``K`` perturbations to each row in ``idx`` of the running state, in energy calls of at most ``chunk_size``
    (``mu``: the proposal's mean in units of sqrt(h), with its importance weight)."""
    n, d = energy.n_particles, energy.spatial_dim
    R = len(idx)
    rows_per_chunk = max(1, min(R, chunk_size // K)) if K <= chunk_size else 1
    k_per_chunk = min(K, max(1, chunk_size // rows_per_chunk))
    if antithetic:
        k_per_chunk = max(2, k_per_chunk - k_per_chunk % 2)
    inv_kT = 1.0 / energy.kT
    for b0 in range(0, R, rows_per_chunk):
        rows = idx[b0:b0 + rows_per_chunk]
        sigma = h[rows].sqrt().reshape(-1, 1, 1, 1)  # (b, 1, 1, 1)
        for k0 in range(0, K, k_per_chunk):
            kc = min(K, k0 + k_per_chunk) - k0
            z = _perturbations((len(rows), kc, n, d), antithetic, generator, x_t)
            if mu is not None:
                z = z + mu[rows, None]  # (b, kc, n, d): the shifted proposal
            y = x_t[rows, None] + sigma * z  # (b, kc, n, d) perturbed, working coordinates
            y = y if coordinate_scale == 1.0 else y * coordinate_scale  # reduced coordinates
            e, f = energy.energy_and_forces(y.reshape(-1, n, d))
            e = e.to(x_t).reshape(len(rows), kc)
            f = f.to(x_t).reshape(len(rows), kc, n, d)
            logw = -e * inv_kT  # (b, kc)
            if mu is not None:  # log N(z; 0, I) - log N(z; mu, I)
                m_r = mu[rows, None]  # (b, 1, n, d)
                logw = logw - (z * m_r).sum((-2, -1)) + 0.5 * (m_r * m_r).sum((-2, -1))
            ok = torch.isfinite(logw) & torch.isfinite(f).flatten(2).all(-1)
            st.n_nonfinite += int((~ok).sum())
            logw = torch.where(ok, logw, torch.full_like(logw, -torch.inf))
            f = torch.where(ok[..., None, None], f, torch.zeros_like(f))
            # Streaming softmax: rescale the old sums to the new running maximum.
            m_new = torch.maximum(st.m[rows], logw.max(dim=1).values)
            m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
            old = torch.exp(st.m[rows] - m_safe)  # exp(-inf) = 0 for rows with nothing yet
            w = torch.exp(logw - m_safe[:, None])  # (b, kc)
            st.s1[rows] = st.s1[rows] * old + w.sum(1)
            st.s2[rows] = st.s2[rows] * old * old + (w * w).sum(1)
            st.acc[rows] = st.acc[rows] * old[:, None, None] + torch.einsum("bk,bknd->bnd", w, f)
            st.acc_z[rows] = st.acc_z[rows] * old[:, None, None] + torch.einsum("bk,bknd->bnd", w, z)
            st.m[rows] = m_new
            st.k[rows] += kc


def _finish(st: _StreamState, energy: Energy, x_t: torch.Tensor, h: torch.Tensor, coordinate_scale: float,
            score_clip: float | None, cv_scale: float | None) -> ScoreEstimate:
    empty = st.s1 == 0  # every perturbation non-finite
    denom = torch.where(empty, torch.ones_like(st.s1), st.s1)[:, None, None]
    # Chain rule: score in working coordinates = coordinate_scale * forces / kT.
    score = st.acc / denom * (coordinate_scale / energy.kT)
    if cv_scale is not None:
        tweedie = st.acc_z / denom / h.sqrt().clamp_min(torch.finfo(h.dtype).tiny)[:, None, None]  # E_w[z] / sigma
        if energy.is_particle_system:
            tweedie = tweedie - tweedie.mean(dim=1, keepdim=True)  # the energy does not weigh the centre of mass
        lam = (cv_scale**2 / (cv_scale**2 + h))[:, None, None]  # (B, 1, 1)
        score = lam * score + (1.0 - lam) * tweedie
        score = torch.where(empty[:, None, None], torch.zeros_like(score), score)
    k = st.k.to(st.s1).clamp_min(1)
    ess = torch.where(empty, torch.zeros_like(st.s1), st.s1 * st.s1 / (k * st.s2.clamp_min(torch.finfo(st.s2.dtype).tiny)))
    score = clip_score(score, score_clip, per_particle=energy.is_particle_system)
    return ScoreEstimate(score, ess, int(st.k.sum()), st.n_nonfinite, int(empty.sum()))
