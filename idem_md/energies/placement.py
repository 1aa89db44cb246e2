"""Starting configurations for MD and relaxation: overlap-free placements (no units of their own).

The default :meth:`idem_md.energies.base.Energy.initial_configuration` and its
overrides in the benchmarks use these helpers; they are plain numpy.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fcc_cluster_sites", "random_sequential_placement"]


def fcc_cluster_sites(n: int) -> np.ndarray:
    """The ``n`` fcc sites (unit nearest-neighbour distance) nearest the origin, ``(n, 3)``.

    Examples
    --------
    >>> fcc_cluster_sites(13).shape
    (13, 3)
    """
    k = math.ceil((n / 4) ** (1 / 3)) + 2
    r = np.arange(-k, k + 1)
    grid = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    sites = grid[grid.sum(1) % 2 == 0] / math.sqrt(2.0)  # fcc: integer points with even sum
    order = np.lexsort((sites[:, 2], sites[:, 1], sites[:, 0], np.round((sites**2).sum(1), 9)))
    return sites[order[:n]].astype(np.float64)


def random_sequential_placement(rng: np.random.Generator, n: int, d: int, box: float,
                                min_distance: float) -> np.ndarray:
    """Uniform points in ``[0, box]^d`` with pairwise distance >= ``min_distance``, ``(n, d)``.

    The box grows by 20 % whenever 1000 n tries fail, so it always terminates.

    Examples
    --------
    >>> x = random_sequential_placement(np.random.default_rng(0), 5, 2, box=3.0, min_distance=1.0)
    >>> bool(np.min([np.linalg.norm(a - b) for i, a in enumerate(x) for b in x[i + 1:]]) >= 1.0)
    True
    """
    points: list[np.ndarray] = []
    tries = 0
    while len(points) < n:
        p = rng.uniform(0.0, box, size=d)
        if all(np.linalg.norm(p - q) >= min_distance for q in points):
            points.append(p)
        tries += 1
        if tries > 1000 * n:  # too dense: restart in a larger box
            points, tries, box = [], 0, box * 1.2
    return np.array(points).reshape(n, d)
