"""Wasserstein distances between sample sets: whole configurations (plain and aligned) and energies.

Lengths in the energy's length unit, energies in its energy unit; each function states its result's unit.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(100, 2))
>>> coordinate_w2(x, x)
0.0
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ._arrays import _as_1d, _centre, _pair_configurations, _sq_dists, _subsample
from .alignment import _descriptors, _hungarian, _pairwise_sq, _refine

__all__ = ['EMD_NUM_ITERMAX', 'coordinate_w2', 'geometric_w2', 'aligned_sq_dists', 'energy_w2', 'energy_w2_idem_convention']


#: Default iteration cap of the network simplex in :func:`ot.emd2` (POT's own default, 1e5, is too low for N = 1000).
EMD_NUM_ITERMAX: int = 10_000_000
_PAIR_CHUNK = 2048  # aligned pairs per vectorised block in geometric_w2 (memory ~ chunk * n^2)


# ------------------------------------------------------------------ Wasserstein
def coordinate_w2(
    x: Any,
    y: Any,
    n_particles: int | None = None,
    spatial_dim: int | None = None,
    centre: bool | None = None,
    num_itermax: int = EMD_NUM_ITERMAX,
) -> float:
    r"""Exact 2-Wasserstein distance between two empirical sets of configurations.

    .. math::

        W_2(x, y) = \Big( \min_{\pi \in \Pi(u_N, u_M)} \sum_{ij} \pi_{ij} \, |x_i - y_j|^2 \Big)^{1/2}

    with uniform weights ``u_N = 1/N``, ``u_M = 1/M``, the squared Euclidean
    distance between whole flattened configurations as cost, solved exactly
    by POT's network simplex (:func:`ot.emd2`, float64). For particle systems
    (``n_particles > 1``) each configuration is first centred on its centre of
    mass (``centre=None`` picks this), the iDEM paper's x-W2 convention; the
    square root is taken (as in the iDEM code, ``power=2``). Memory and time
    grow as ``N * M`` (1000 x 1000 takes about 1.5 s); use :func:`batched` for
    larger sets.

    Parameters
    ----------
    x, y : array or tensor
        ``(N, n, d)`` and ``(M, n, d)``, or flat ``(N, dim)``, ``(M, dim)``.
    n_particles, spatial_dim : int, optional
        Shape of one configuration when the inputs are flat.
    centre : bool, optional
        Subtract each configuration's centroid first; default ``n_particles > 1``.
    num_itermax : int
        Network-simplex iteration cap; hitting it raises :class:`RuntimeError`.

    Returns
    -------
    float
        W2 in reduced length units (of the whole configuration vector).
    """
    xa, ya = _pair_configurations(x, y, n_particles, spatial_dim)
    if centre is None:
        centre = xa.shape[1] > 1
    if centre:
        xa, ya = _centre(xa), _centre(ya)
    xf, yf = xa.reshape(len(xa), -1), ya.reshape(len(ya), -1)
    cost = _sq_dists(xf, yf)  # (N, M)
    return math.sqrt(max(_emd2(cost, num_itermax), 0.0))


def geometric_w2(
    x: Any,
    y: Any,
    n_particles: int | None = None,
    spatial_dim: int | None = None,
    reflections: bool = False,
    max_samples: int | None = 200,
    seed: int = 0,
    n_iter: int = 10,
    num_itermax: int = EMD_NUM_ITERMAX,
) -> float:
    r"""2-Wasserstein distance with a cost invariant to rotations and particle permutations.

    For a pair of centred configurations ``a``, ``b`` (``(n, d)`` each) the cost is

    .. math::

        c(a, b) = \min_{R \in SO(d),\ P \in S_n} \| a - P b R^T \|^2

    (``O(d)`` when ``reflections=True``), and the result is
    ``sqrt(emd2(uniform, uniform, C))`` over the ``N x M`` matrix of those costs.
    The inner minimum is found by alternating the optimal permutation for a
    fixed rotation (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`
    on squared particle distances) and the optimal rotation for a fixed
    permutation (Kabsch, by SVD, vectorised over pairs) until the permutation no
    longer changes or ``n_iter`` rounds. Two starts are run and the lower cost is
    kept: the identity rotation, and a permutation matching particles by a
    rotation-invariant descriptor (each particle's sorted distances to all
    particles). Each round can only lower the cost, so the result is a local
    optimum and an upper bound on the exact cost, as with the alignment
    heuristics in the literature (e.g. Klein et al. 2023); a rotated and
    permuted copy of a configuration is recovered exactly (cost 0) whenever the
    descriptors of its particles differ.

    Cost: one Hungarian solve per pair and round, i.e. ``N * M`` pair
    alignments (1e6 for N = M = 1000 is far too slow in Python). Hence
    ``max_samples``: each set larger than it is subsampled without replacement
    with ``numpy.random.default_rng(seed)`` before the alignment, so the result
    is a seeded estimate; ``max_samples=None`` uses every sample. Measured:
    about 5 s for 200 x 200 LJ-13 configurations on one CPU core.

    Parameters
    ----------
    x, y : array or tensor
        ``(N, n, d)``, ``(M, n, d)`` (or flat with ``n_particles``/``spatial_dim``), ``n >= 2``.
    reflections : bool
        Also allow improper rotations (mirror images count as identical).
    max_samples : int or None
        Subsample each set to at most this many configurations (default 200).
    seed : int
        Seed of the subsampling.
    n_iter : int
        Maximum Hungarian/Kabsch rounds per start.
    num_itermax : int
        Network-simplex iteration cap for the outer transport problem.

    Returns
    -------
    float
        Geometric W2 in reduced length units.
    """
    xa, ya = _pair_configurations(x, y, n_particles, spatial_dim)
    if xa.shape[1] < 2:
        raise ValueError(f"geometric_w2 needs particle systems (n_particles >= 2), got n_particles={xa.shape[1]}")
    if max_samples is not None and (isinstance(max_samples, bool) or int(max_samples) < 1):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter!r}")
    rng = np.random.default_rng(seed)
    xa, ya = _subsample(xa, max_samples, rng), _subsample(ya, max_samples, rng)
    cost = aligned_sq_dists(xa, ya, reflections=reflections, n_iter=n_iter)  # (N, M)
    return math.sqrt(max(_emd2(cost, num_itermax), 0.0))


def aligned_sq_dists(x: np.ndarray, y: np.ndarray, reflections: bool = False, n_iter: int = 10) -> np.ndarray:
    """``(N, M)`` matrix of the rotation/permutation-minimised squared distances of :func:`geometric_w2`.

    ``x``: ``(N, n, d)``, ``y``: ``(M, n, d)``, float arrays; both are centred here.
    Units: reduced length squared.
    """
    x, y = _centre(np.asarray(x, dtype=np.float64)), _centre(np.asarray(y, dtype=np.float64))
    desc_x, desc_y = _descriptors(x), _descriptors(y)  # (N, n, n), (M, n, n)
    n_x, n_y = len(x), len(y)
    ii, jj = np.divmod(np.arange(n_x * n_y), n_y)  # all pairs, row-major
    out = np.empty(n_x * n_y)
    for s in range(0, n_x * n_y, _PAIR_CHUNK):
        i, j = ii[s : s + _PAIR_CHUNK], jj[s : s + _PAIR_CHUNK]
        a, b = x[i], y[j]  # (P, n, d)
        dcost = _pairwise_sq(desc_x[i], desc_y[j])  # (P, n, n)
        perm_desc = _hungarian(dcost)
        perm_id = _hungarian(_pairwise_sq(a, b))
        out[s : s + len(i)] = np.minimum(
            _refine(a, b, perm_desc, reflections, n_iter), _refine(a, b, perm_id, reflections, n_iter)
        )
    return out.reshape(n_x, n_y)


def energy_w2(e1: Any, e2: Any) -> float:
    r"""Exact 1D 2-Wasserstein distance between two empirical energy distributions.

    .. math::

        W_2 = \Big( \int_0^1 |F_1^{-1}(q) - F_2^{-1}(q)|^2 \, dq \Big)^{1/2}

    For equal sizes this is the root mean squared difference of the sorted
    samples; otherwise POT's :func:`ot.emd2_1d` (uniform weights, squared
    cost). The square root *is* taken, so the result has energy units. See
    :func:`energy_w2_idem_convention` for the number the iDEM code reports.

    Parameters
    ----------
    e1, e2 : array or tensor
        ``(N,)`` and ``(M,)`` energies in reduced energy units (also usable for
        any 1D sample).

    Returns
    -------
    float
        E-W2 in reduced energy units.
    """
    return math.sqrt(max(_w2_sq_1d(_as_1d(e1, "e1"), _as_1d(e2, "e2")), 0.0))


def energy_w2_idem_convention(e1: Any, e2: Any) -> float:
    """Energy "W2" exactly as the public iDEM code computes it: the **squared** W2, no root.

    The iDEM code reports ``pot.emd2_1d(e_data, e_generated)``, whose default
    metric is the squared Euclidean distance, so its "E-W2" is
    ``energy_w2(e1, e2) ** 2`` (units: reduced energy squared). Use this only to
    compare with numbers published with that code; :func:`energy_w2` is the
    actual distance.
    """
    return max(_w2_sq_1d(_as_1d(e1, "e1"), _as_1d(e2, "e2")), 0.0)


# ------------------------------------------------------------ distance statistics




def _emd2(cost: np.ndarray, num_itermax: int) -> float:
    """Exact OT cost with uniform weights; raises if the network simplex did not converge."""
    import ot

    a = np.full(cost.shape[0], 1.0 / cost.shape[0])
    b = np.full(cost.shape[1], 1.0 / cost.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reported through log["warning"] below
        value, log = ot.emd2(a, b, np.ascontiguousarray(cost), numItermax=int(num_itermax), log=True)
    if log.get("warning") is not None:
        raise RuntimeError(
            f"ot.emd2 did not converge ({log['warning']}); raise num_itermax (now {num_itermax}) or use fewer samples"
        )
    return float(value)


def _w2_sq_1d(u: np.ndarray, v: np.ndarray) -> float:
    """Squared exact 1D W2 between empirical samples with uniform weights."""
    if len(u) == len(v):
        return float(np.mean((np.sort(u) - np.sort(v)) ** 2))
    import ot

    return float(ot.emd2_1d(u, v, metric="sqeuclidean"))
