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
        ``(B,)`` normalised effective sample size of the K weights, ``(sum w)^2 / (K sum w^2)`` in [1/K, 1].
    n_evaluations : int
        Energy evaluations spent (``B * K``).
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
) -> ScoreEstimate:
    """Monte-Carlo DEM estimate of the noised score at ``(x_t, t)`` (Eq. 8).

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
        K, the number of perturbations per configuration.
    coordinate_scale : float
        Working coordinates are reduced coordinates divided by this (GMM-40 uses 50).
    score_clip : float or None
        Norm bound applied to the final estimate (per particle for particle systems).
    chunk_size : int
        Maximum number of configurations sent to the energy in one call.
    generator : torch.Generator, optional
        Source of the Gaussian perturbations.

    Returns
    -------
    ScoreEstimate
    """
    if x_t.ndim != 3 or tuple(x_t.shape[1:]) != (energy.n_particles, energy.spatial_dim):
        raise ValueError(f"x_t must have shape (B, {energy.n_particles}, {energy.spatial_dim}), got {tuple(x_t.shape)}")
    B = x_t.shape[0]
    if t.shape != (B,):
        raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
    if not isinstance(num_mc_samples, int) or num_mc_samples < 1:
        raise ValueError(f"num_mc_samples must be a positive int, got {num_mc_samples!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    K, n, d = num_mc_samples, energy.n_particles, energy.spatial_dim
    sigma = schedule.h(t).sqrt().reshape(B, 1, 1, 1)  # (B, 1, 1, 1)
    inv_kT = 1.0 / energy.kT

    # Online softmax state per row: running max m, sum of exp(logw - m), sum of exp(2(logw - m)),
    # and the weighted sum of forces.
    m = torch.full((B,), -torch.inf, dtype=x_t.dtype, device=x_t.device)
    s1 = torch.zeros(B, dtype=x_t.dtype, device=x_t.device)
    s2 = torch.zeros_like(s1)
    acc = torch.zeros_like(x_t)  # (B, n, d)
    n_nonfinite = 0

    rows_per_chunk = max(1, min(B, chunk_size // K)) if K <= chunk_size else 1
    k_per_chunk = min(K, max(1, chunk_size // rows_per_chunk))
    for b0 in range(0, B, rows_per_chunk):
        b1 = min(B, b0 + rows_per_chunk)
        rows = slice(b0, b1)
        for k0 in range(0, K, k_per_chunk):
            kc = min(K, k0 + k_per_chunk) - k0
            z = torch.randn((b1 - b0, kc, n, d), generator=generator, dtype=x_t.dtype, device=x_t.device)
            y = x_t[rows, None] + sigma[rows] * z  # (b, kc, n, d) perturbed, working coordinates
            y = y if coordinate_scale == 1.0 else y * coordinate_scale  # reduced coordinates
            e, f = energy.energy_and_forces(y.reshape(-1, n, d))
            e = e.to(x_t).reshape(b1 - b0, kc)
            f = f.to(x_t).reshape(b1 - b0, kc, n, d)
            logw = -e * inv_kT  # (b, kc)
            ok = torch.isfinite(logw) & torch.isfinite(f).flatten(2).all(-1)
            n_nonfinite += int((~ok).sum())
            logw = torch.where(ok, logw, torch.full_like(logw, -torch.inf))
            f = torch.where(ok[..., None, None], f, torch.zeros_like(f))
            # Streaming softmax: rescale the old sums to the new running maximum.
            m_new = torch.maximum(m[rows], logw.max(dim=1).values)
            m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
            old = torch.exp(m[rows] - m_safe)  # exp(-inf) = 0 for rows with nothing yet
            w = torch.exp(logw - m_safe[:, None])  # (b, kc)
            s1[rows] = s1[rows] * old + w.sum(1)
            s2[rows] = s2[rows] * old * old + (w * w).sum(1)
            acc[rows] = acc[rows] * old[:, None, None] + torch.einsum("bk,bknd->bnd", w, f)
            m[rows] = m_new

    empty = s1 == 0  # every perturbation non-finite
    denom = torch.where(empty, torch.ones_like(s1), s1)
    # Chain rule: score in working coordinates = coordinate_scale * forces / kT.
    score = acc / denom[:, None, None] * (inv_kT * coordinate_scale)
    ess = torch.where(empty, torch.zeros_like(s1), s1 * s1 / (K * s2.clamp_min(torch.finfo(s2.dtype).tiny)))
    score = clip_score(score, score_clip, per_particle=energy.is_particle_system)
    return ScoreEstimate(score, ess, B * K, n_nonfinite, int(empty.sum()))
