"""Sample-quality metrics, now in :mod:`idem_md.analysis` (this module keeps ``from idem_md.metrics import ...``).

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(100, 2))
>>> coordinate_w2(x, x)
0.0
"""

from __future__ import annotations

from .analysis.batching import batched
from .analysis.distances import distance_tvd, distance_w2, histogram_tvd, interatomic_distances
from .analysis.modes import mode_counts, mode_coverage
from .analysis.wasserstein import (EMD_NUM_ITERMAX, aligned_sq_dists, coordinate_w2, energy_w2,
                                   energy_w2_idem_convention, geometric_w2)
from .analysis.weights import effective_sample_size

__all__ = [
    "coordinate_w2",
    "geometric_w2",
    "aligned_sq_dists",
    "energy_w2",
    "energy_w2_idem_convention",
    "interatomic_distances",
    "distance_w2",
    "distance_tvd",
    "histogram_tvd",
    "mode_counts",
    "mode_coverage",
    "effective_sample_size",
    "batched",
    "EMD_NUM_ITERMAX",
]
