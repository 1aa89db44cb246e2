"""Rotation and permutation alignment of configurations (Kabsch + Hungarian), for the geometric W2."""

from __future__ import annotations

import numpy as np


def _descriptors(x: np.ndarray) -> np.ndarray:
    """Rotation/reflection/permutation-invariant particle descriptors: sorted distances to all particles.

    ``(N, n, d) -> (N, n, n)``; the first entry of each row is the zero self-distance.
    """
    diff = x[:, :, None, :] - x[:, None, :, :]
    return np.sort(np.sqrt(np.einsum("nijd,nijd->nij", diff, diff)), axis=-1)


def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(P, n, k), (P, n, k) -> (P, n, n)``: squared distance between row i of a and row j of b."""
    diff = a[:, :, None, :] - b[:, None, :, :]
    return np.einsum("pijk,pijk->pij", diff, diff)


def _hungarian(cost: np.ndarray) -> np.ndarray:
    """``(P, n, n)`` costs -> ``(P, n)`` permutations ``perm`` minimising ``sum_i cost[i, perm[i]]``."""
    from scipy.optimize import linear_sum_assignment

    out = np.empty(cost.shape[:2], dtype=np.int64)
    for p in np.arange(len(cost)):
        out[p] = linear_sum_assignment(cost[p])[1]
    return out


def _kabsch(a: np.ndarray, b: np.ndarray, reflections: bool) -> np.ndarray:
    """``(P, n, d)`` pairs -> ``(P, d, d)`` rotations ``R`` minimising ``|a - b R^T|^2`` (centred inputs)."""
    h = np.einsum("pni,pnj->pij", b, a)  # (P, d, d) = sum_n b_n a_n^T
    u, _, vt = np.linalg.svd(h)
    if not reflections:  # flip the weakest axis where the best orthogonal map is a reflection
        sign = np.sign(np.linalg.det(np.einsum("pij,pjk->pik", u, vt)))
        sign[sign == 0] = 1.0
        vt[:, -1, :] *= sign[:, None]
    return np.einsum("pji,pkj->pik", vt, u)  # R = V U^T


def _refine(a: np.ndarray, b: np.ndarray, perm: np.ndarray, reflections: bool, n_iter: int) -> np.ndarray:
    """Alternate Kabsch and Hungarian from ``perm``; ``(P,)`` best squared distances found.

    Each pair stops as soon as its permutation no longer changes.
    """
    best = np.full(len(a), np.inf)
    active = np.arange(len(a))
    perm = perm.copy()
    for _ in np.arange(n_iter):
        aa, bb, pp = a[active], b[active], perm[active]
        rows = np.arange(len(active))[:, None]
        rot = _kabsch(aa, bb[rows, pp], reflections)  # (P', d, d)
        br = np.einsum("pnj,pij->pni", bb, rot)  # (P', n, d) all of b rotated
        best[active] = np.minimum(best[active], ((aa - br[rows, pp]) ** 2).sum((1, 2)))
        new_perm = _hungarian(_pairwise_sq(aa, br))
        changed = (new_perm != pp).any(1)
        perm[active] = new_perm
        active = active[changed]
        if len(active) == 0:
            break
    return best
