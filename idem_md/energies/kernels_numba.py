"""The numba kernels behind :mod:`idem_md.energies.kernels` (this module imports numba).

:mod:`idem_md.energies.kernels` imports this module on the first kernel call, so that
``import idem_md`` does not import numba. Every function here is compiled with
``cache=True`` (the JIT cost, a few seconds per dtype, is paid once per machine and stored
in ``__pycache__``). The helpers are module-level functions compiled with
``inline="always"``: numba inlines them into the kernel's IR before the parallel (prange)
transformation, so the compiled kernel is the one loop nest it was when written as a single
function, and calls to module-level dispatchers, unlike calls to jitted closures, keep the
kernels cachable.

Layout: coordinates live in per-axis float64 scratch rows; 1D and 2D inputs are padded with
zeros on the missing axes (which changes neither distances nor centring), so one code path
with particle i's terms in registers serves d = 1, 2, 3. That layout measured ~30% faster
than loops over a runtime d. fastmath stays off: it bought nothing measurable and would relax
the IEEE semantics the reference comparison relies on. Arithmetic is float64 whatever the
input dtype. Units are those of the calling energy.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

__all__ = ["lj_kernel", "dw_kernel"]

_INLINE = dict(cache=True, inline="always")


@numba.njit(**_INLINE)
def _scratch(n):  # pragma: no cover - compiled
    """Six ``(n,)`` float64 rows: positions and gradients per axis (one set per chunk)."""
    return np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)


@numba.njit(**_INLINE)
def _load(x, b, px, py, pz, gx, gy, gz):  # pragma: no cover - compiled
    """Copy configuration ``b`` of ``x (B, n, d)`` into the scratch rows (missing axes 0),
    zero the gradient rows; returns the centroid ``(sx, sy, sz)``."""
    n, d = x.shape[1], x.shape[2]
    sx = 0.0
    sy = 0.0
    sz = 0.0
    for i in range(n):
        px[i] = x[b, i, 0]
        py[i] = x[b, i, 1] if d > 1 else 0.0
        pz[i] = x[b, i, 2] if d > 2 else 0.0
        sx += px[i]
        sy += py[i]
        sz += pz[i]
        gx[i] = 0.0
        gy[i] = 0.0
        gz[i] = 0.0
    return sx / n, sy / n, sz / n


@numba.njit(**_INLINE)
def _lj_pairs(px, py, pz, gx, gy, gz, rm2, softening, with_forces):  # pragma: no cover - compiled
    """``sum_{i<j} t^6 (t^6 - 2)``, ``t = r_m^2 / (|x_i - x_j|^2 + s)``; adds its gradient
    (without the factor ``f epsilon``) into the gradient rows when ``with_forces``."""
    n = px.shape[0]
    e_pair = 0.0
    for i in range(n - 1):
        xi = px[i]
        yi = py[i]
        zi = pz[i]
        gxi = 0.0
        gyi = 0.0
        gzi = 0.0
        for j in range(i + 1, n):
            dx = xi - px[j]
            dy = yi - py[j]
            dz = zi - pz[j]
            r2 = softening + dx * dx + dy * dy + dz * dz
            t = rm2 / r2
            inv6 = t * t * t
            e_pair += inv6 * (inv6 - 2.0)
            if with_forces:
                # dE/dr2 = -6 inv6 (inv6 - 1) / r2 and dE/dx_i = 2 dE/dr2 (x_i - x_j)
                g = -12.0 * inv6 * (inv6 - 1.0) / r2
                gxi += g * dx
                gyi += g * dy
                gzi += g * dz
                gx[j] -= g * dx
                gy[j] -= g * dy
                gz[j] -= g * dz
        gx[i] += gxi
        gy[i] += gyi
        gz[i] += gzi
    return e_pair


@numba.njit(**_INLINE)
def _dw_pairs(px, py, pz, gx, gy, gz, a, b_coef, d0, min_distance, with_forces):  # pragma: no cover - compiled
    """``sum_{i<j} a u^4 + b u^2``, ``u = |x_i - x_j| - d0``; adds its gradient into the
    gradient rows when ``with_forces`` (``1/d`` guarded by ``min_distance``)."""
    n = px.shape[0]
    e = 0.0
    for i in range(n - 1):
        xi = px[i]
        yi = py[i]
        zi = pz[i]
        gxi = 0.0
        gyi = 0.0
        gzi = 0.0
        for j in range(i + 1, n):
            dx = xi - px[j]
            dy = yi - py[j]
            dz = zi - pz[j]
            dist = np.sqrt(dx * dx + dy * dy + dz * dz)
            u = dist - d0
            u2 = u * u
            e += a * u2 * u2 + b_coef * u2
            if with_forces:
                # dE/dx_i = dE/dd (x_i - x_j) / d, with d guarded as in the reference
                g = (4.0 * a * u2 * u + 2.0 * b_coef * u) / max(dist, min_distance)
                gxi += g * dx
                gyi += g * dy
                gzi += g * dz
                gx[j] -= g * dx
                gy[j] -= g * dy
                gz[j] -= g * dz
        gx[i] += gxi
        gy[i] += gyi
        gz[i] += gzi
    return e


@numba.njit(parallel=True, cache=True)
def lj_kernel(x, epsilon, r_m, pair_factor, softening, oscillator_scale, energy, forces, with_forces,
              n_chunks):  # pragma: no cover - compiled
    """LJ-n energies into ``energy (B,)`` and, when ``with_forces``, ``-dE/dx`` into ``forces (B, n, d)``.

    ``E = f epsilon sum_{i<j} t^6 (t^6 - 2) + c sum_i |x_i - xbar|^2`` (see
    :func:`idem_md.energies.kernels.lj_energy_forces`); the batch is split into ``n_chunks``
    contiguous chunks, one per prange iteration.
    """
    batch, n, d = x.shape
    fe = pair_factor * epsilon
    two_c = 2.0 * oscillator_scale
    for c in prange(n_chunks):
        px, py, pz, gx, gy, gz = _scratch(n)
        for b in range(c * batch // n_chunks, (c + 1) * batch // n_chunks):
            sx, sy, sz = _load(x, b, px, py, pz, gx, gy, gz)
            e_pair = _lj_pairs(px, py, pz, gx, gy, gz, r_m * r_m, softening, with_forces)
            e_osc = 0.0
            for i in range(n):
                cx = px[i] - sx
                cy = py[i] - sy
                cz = pz[i] - sz
                e_osc += cx * cx + cy * cy + cz * cz
                if with_forces:
                    # The oscillator's gradient is 2 c (x_i - xbar): the xbar terms cancel.
                    forces[b, i, 0] = -(fe * gx[i] + two_c * cx)
                    if d > 1:
                        forces[b, i, 1] = -(fe * gy[i] + two_c * cy)
                    if d > 2:
                        forces[b, i, 2] = -(fe * gz[i] + two_c * cz)
            energy[b] = fe * e_pair + oscillator_scale * e_osc


@numba.njit(parallel=True, cache=True)
def dw_kernel(x, a, b_coef, d0, min_distance, energy, forces, with_forces, n_chunks):  # pragma: no cover - compiled
    """DW-n energies into ``energy (B,)`` and, when ``with_forces``, ``-dE/dx`` into ``forces (B, n, d)``.

    ``E = sum_{i<j} a (d_ij - d0)^4 + b (d_ij - d0)^2`` (see
    :func:`idem_md.energies.kernels.dw_energy_forces`); chunks as in :func:`lj_kernel`.
    """
    batch, n, d = x.shape
    for c in prange(n_chunks):
        px, py, pz, gx, gy, gz = _scratch(n)
        for b in range(c * batch // n_chunks, (c + 1) * batch // n_chunks):
            _load(x, b, px, py, pz, gx, gy, gz)
            energy[b] = _dw_pairs(px, py, pz, gx, gy, gz, a, b_coef, d0, min_distance, with_forces)
            if with_forces:
                for i in range(n):
                    forces[b, i, 0] = -gx[i]
                    if d > 1:
                        forces[b, i, 1] = -gy[i]
                    if d > 2:
                        forces[b, i, 2] = -gz[i]
