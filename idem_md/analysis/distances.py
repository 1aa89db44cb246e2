"""Interatomic distances and histogram distances between sample sets (W2 and TVD of pooled distances)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ._arrays import _as_1d, _configurations, _need_pairs, _pair_configurations
from .wasserstein import energy_w2

__all__ = ['interatomic_distances', 'distance_w2', 'distance_tvd', 'histogram_tvd']


def interatomic_distances(x: Any, n_particles: int | None = None, spatial_dim: int | None = None) -> Any:
    """All particle-pair distances ``|x_i - x_j|`` for ``i < j`` (row-major order of ``triu_indices``).

    Parameters
    ----------
    x : array or tensor
        ``(N, n, d)`` or flat ``(N, dim)`` with ``n_particles``/``spatial_dim``.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``(N, n (n - 1) / 2)`` in reduced length units; a tensor (same dtype and
        device) for tensor input, else a float64 array.
    """
    if isinstance(x, torch.Tensor):
        n, d = _configurations(x, "x", n_particles, spatial_dim).shape[1:]  # validates shape and values
        x3 = x.reshape(x.shape[0], n, d)
        i, j = torch.triu_indices(n, n, offset=1, device=x.device)
        return torch.linalg.vector_norm(x3[:, i] - x3[:, j], dim=-1)
    x3 = _configurations(x, "x", n_particles, spatial_dim)
    n = x3.shape[1]
    i, j = np.triu_indices(n, k=1)
    return np.linalg.norm(x3[:, i] - x3[:, j], axis=-1)


def distance_w2(x: Any, y: Any, n_particles: int | None = None, spatial_dim: int | None = None) -> float:
    """1D 2-Wasserstein distance (with the root) between the pooled interatomic distances of two sets.

    The distances of all pairs of all configurations of each set are pooled
    into one 1D sample (see :func:`interatomic_distances`) and compared with
    :func:`energy_w2`'s exact 1D W2. Units: reduced length.
    """
    xa, ya = _pair_configurations(x, y, n_particles, spatial_dim)
    _need_pairs(xa)
    return energy_w2(interatomic_distances(xa).ravel(), interatomic_distances(ya).ravel())


def distance_tvd(
    x: Any,
    y: Any,
    n_particles: int | None = None,
    spatial_dim: int | None = None,
    bins: int = 200,
    range: tuple[float, float] | None = None,  # noqa: A002 - mirrors numpy.histogram
) -> float:
    """Total variation distance between the histograms of pooled interatomic distances.

    See :func:`histogram_tvd` for the exact definition (``bins`` equal bins over
    the common range of both sets unless ``range`` is given). Dimensionless, in [0, 1].
    """
    xa, ya = _pair_configurations(x, y, n_particles, spatial_dim)
    _need_pairs(xa)
    return histogram_tvd(interatomic_distances(xa).ravel(), interatomic_distances(ya).ravel(), bins=bins, range=range)


def histogram_tvd(
    u: Any,
    v: Any,
    bins: int = 200,
    range: tuple[float, float] | None = None,  # noqa: A002 - mirrors numpy.histogram
) -> float:
    r"""Total variation distance between two binned 1D samples, ``0.5 * sum_k |p_k - q_k|``.

    ``p_k``, ``q_k`` are the fractions of ``u`` and ``v`` in bin ``k`` of
    ``bins`` equal-width bins over ``range``, by default
    ``[min(u, v), max(u, v)]`` (the common range of both sets). With an explicit
    ``range``, the mass falling outside it forms one extra bin on each side
    (below/above), so that ``p`` and ``q`` still sum to 1. Dimensionless: 0 for
    identical histograms, 1 for disjoint ones.
    """
    ua, va = _as_1d(u, "u"), _as_1d(v, "v")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    if range is None:
        lo, hi = float(min(ua.min(), va.min())), float(max(ua.max(), va.max()))
        if hi <= lo:  # all values equal: one bin holds everything
            hi = lo + 1.0
    else:
        lo, hi = (float(r) for r in range)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"range must be a finite (low, high) with high > low, got {range!r}")
    edges = np.concatenate([[-np.inf], np.linspace(lo, hi, bins + 1), [np.inf]])
    p = np.histogram(ua, bins=edges)[0] / len(ua)
    q = np.histogram(va, bins=edges)[0] / len(va)
    return float(0.5 * np.abs(p - q).sum())


# -------------------------------------------------------------------- modes, ESS
