"""Analysis of sample sets: distances between sets, importance weights, structure.

* :mod:`.wasserstein`: exact W2 of whole configurations (plain and rotation/permutation aligned) and of energies;
* :mod:`.distances`: interatomic distances, their W2 and histogram TVD;
* :mod:`.modes`: mode counts and coverage of mixtures;
* :mod:`.weights`: importance weights, ESS, log Z, reweighted means;
* :mod:`.batching`: mean ± std of any metric over disjoint random batches;
* :mod:`.structure`: mdtraj trajectories, pair distances, radial distributions.

Every metric takes torch tensors or numpy arrays, computes in float64 numpy on the CPU, and returns a
Python float. Configurations are given as ``(N, n, d)`` or flat ``(N, dim)`` plus
``n_particles``/``spatial_dim`` (a flat array without them is read as ``N`` vectors of ``dim``
coordinates, one "particle"). Lengths are in the energy's length unit and energies in its energy unit;
each metric states the unit of its result. Empty inputs, NaN/inf values and mismatched shapes raise
:class:`ValueError` naming the argument. ``idem_md.metrics`` re-exports the metrics (the old module path).

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(100, 2))
>>> coordinate_w2(x, x)
0.0
"""

from __future__ import annotations

from .batching import batched
from .distances import distance_tvd, distance_w2, histogram_tvd, interatomic_distances
from .modes import mode_counts, mode_coverage
from .structure import all_pairs, pair_distances, radial_distribution, to_trajectory
from .wasserstein import (EMD_NUM_ITERMAX, aligned_sq_dists, coordinate_w2, energy_w2, energy_w2_idem_convention,
                          geometric_w2)
from .weights import (ImportanceSummary, effective_sample_size, importance_sampling_summary, importance_weights,
                      log_importance_weights, reweighted_mean)

__all__ = [
    "coordinate_w2",
    "geometric_w2",
    "aligned_sq_dists",
    "energy_w2",
    "energy_w2_idem_convention",
    "EMD_NUM_ITERMAX",
    "interatomic_distances",
    "distance_w2",
    "distance_tvd",
    "histogram_tvd",
    "mode_counts",
    "mode_coverage",
    "effective_sample_size",
    "log_importance_weights",
    "importance_weights",
    "reweighted_mean",
    "importance_sampling_summary",
    "ImportanceSummary",
    "batched",
    "to_trajectory",
    "all_pairs",
    "pair_distances",
    "radial_distribution",
]
