"""Structural analysis of sample sets with mdtraj: trajectories, pair distances, radial distributions.

Sample sets become :class:`mdtraj.Trajectory` objects through
:meth:`idem_md.samples.Samples.to_mdtraj` (one argon atom per particle, one reduced
length unit = one Angstrom = 0.1 nm, :data:`idem_md.units.REDUCED_LENGTH_IN_FILES_ANGSTROM`; 2D systems
get z = 0). Every function here takes and returns **reduced** lengths: the
conversion to and from mdtraj's nanometres happens only inside, through that
constant.

mdtraj is imported lazily, inside the functions.

Examples
--------
>>> import torch
>>> from idem_md.io import Samples
>>> traj = to_trajectory(Samples(torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])))
>>> pair_distances(traj).round(5).tolist()
[[5.0]]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..samples import Samples
from ..samples.dcd import nm_per_length_unit

#: mdtraj nanometres per reduced length unit (the sample files' convention).
_NM_PER_REDUCED: float = nm_per_length_unit("reduced")

if TYPE_CHECKING:
    import mdtraj

__all__ = ["to_trajectory", "all_pairs", "pair_distances", "radial_distribution"]


def to_trajectory(obj: Any, n_particles: int | None = None, spatial_dim: int | None = None) -> "mdtraj.Trajectory":
    """A sample set as an :class:`mdtraj.Trajectory` (delegates to :meth:`Samples.to_mdtraj`).

    Parameters
    ----------
    obj : Samples, MDRun, mdtraj.Trajectory, array or tensor
        A Trajectory is returned unchanged; an MDRun goes through
        ``to_samples()``; arrays/tensors ``(N, n, d)`` or flat ``(N, n * d)``
        (particle-major) need ``n_particles`` and ``spatial_dim``.
    n_particles, spatial_dim : int, optional
        Shape of one configuration, for array input.
    """
    import mdtraj as md

    if isinstance(obj, md.Trajectory):
        return obj
    if isinstance(obj, Samples):
        return obj.to_mdtraj()
    if hasattr(obj, "to_samples") and callable(obj.to_samples):  # MDRun
        return obj.to_samples().to_mdtraj()
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        if n_particles is None or spatial_dim is None:
            if obj.ndim != 3:
                raise ValueError(f"flat array input of shape {tuple(obj.shape)} needs n_particles and spatial_dim")
            n_particles, spatial_dim = int(obj.shape[1]), int(obj.shape[2])
        return Samples.from_array(obj, n_particles, spatial_dim).to_mdtraj()
    raise TypeError(f"obj must be Samples, an MDRun, an mdtraj.Trajectory or an array/tensor, got {type(obj).__name__}")


def all_pairs(n_particles: int) -> np.ndarray:
    """``(n (n - 1) / 2, 2)`` atom index pairs ``i < j`` in row-major order (``numpy.triu_indices``).

    The same order as :func:`idem_md.analysis.interatomic_distances`.
    """
    if isinstance(n_particles, bool) or not isinstance(n_particles, (int, np.integer)) or n_particles < 2:
        raise ValueError(f"n_particles must be an int >= 2 to form pairs, got {n_particles!r}")
    i, j = np.triu_indices(int(n_particles), k=1)
    return np.stack([i, j], axis=1).astype(np.int32)


def pair_distances(traj: Any, pairs: Any = None) -> np.ndarray:
    """Interatomic distances per frame by :func:`mdtraj.compute_distances` (no periodic images).

    Parameters
    ----------
    traj : mdtraj.Trajectory, Samples or MDRun
        Converted with :func:`to_trajectory`.
    pairs : array, optional
        ``(P, 2)`` atom indices; default every pair ``i < j`` (:func:`all_pairs`).

    Returns
    -------
    numpy.ndarray
        ``(n_frames, P)`` float64 distances in reduced length units. For 2D
        systems z is 0, so these equal the in-plane distances.
    """
    import mdtraj as md

    traj = to_trajectory(traj)
    pairs = _pairs(traj, pairs)
    d_nm = md.compute_distances(traj, pairs, periodic=False)  # (F, P) nm, float32
    return d_nm.astype(np.float64) / _NM_PER_REDUCED


def radial_distribution(
    traj: Any,
    r_range: tuple[float, float] = (0.0, 3.0),
    n_bins: int = 150,
    *,
    pairs: Any = None,
    spatial_dim: int | None = None,
    periodic: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Radial distribution function ``g(r)`` of a trajectory, in reduced units.

    **Periodic trajectories** (with a unit cell, 3D): :func:`mdtraj.compute_rdf`
    unchanged (minimum-image distances, normalised by the mean number density
    ``P / V`` of the pairs), with ``r`` converted to reduced lengths.

    **Clusters** (no unit cell: every idem_md sample set). A free cluster has
    no volume, so there is no bulk density to normalise by. The result is the
    pair-distance density per unit shell volume,

    .. math::

        g(r_k) = \frac{\langle \#\{\text{pairs with } |x_i - x_j| \in \text{bin } k\} \rangle_\text{frames}}
                      {P \, \Delta V_k},

    with ``P`` pairs per frame and ``\Delta V_k`` the shell volume of bin ``k``
    in reduced length units (``4/3 pi (r_{k+1}^3 - r_k^3)`` in 3D, the annulus
    area ``pi (r_{k+1}^2 - r_k^2)`` in 2D, ``2 (r_{k+1} - r_k)`` in 1D). It is
    what ``mdtraj.compute_rdf`` returns for a reference volume of one reduced
    length cubed, and ``sum_k g(r_k) \Delta V_k`` is the fraction of pair
    distances inside ``r_range``. In 3D it is computed by
    :func:`mdtraj.compute_rdf` itself on a copy of the trajectory given a unit
    cube of that volume, with ``periodic=False`` (so the box never wraps a
    distance); mdtraj's shells are spheres, so for 2D and 1D systems (z = 0,
    detected from the coordinates unless ``spatial_dim`` is given) the same
    histogram of :func:`pair_distances` is normalised here with the 2D/1D shells.

    Parameters
    ----------
    traj : mdtraj.Trajectory, Samples or MDRun
    r_range : (float, float)
        ``(r_min, r_max)`` in reduced length units, ``0 <= r_min < r_max``.
    n_bins : int
        Equal-width bins.
    pairs : array, optional
        ``(P, 2)`` atom indices; default all pairs ``i < j``.
    spatial_dim : int, optional
        1, 2 or 3; default inferred (the highest axis with a nonzero coordinate).
    periodic : bool, optional
        Use the unit cell (mdtraj's bulk normalisation); default: when the
        trajectory has one. ``True`` without a unit cell raises.

    Returns
    -------
    r : numpy.ndarray
        ``(n_bins,)`` bin centres, reduced length.
    g : numpy.ndarray
        ``(n_bins,)`` ``g(r)``: dimensionless for periodic input, reduced
        length\ :sup:`-spatial_dim` for clusters.
    """
    import mdtraj as md

    traj = to_trajectory(traj)
    lo, hi = (float(v) for v in r_range) if _is_pair(r_range) else (math.nan, math.nan)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
        raise ValueError(f"r_range must be (r_min, r_max) with 0 <= r_min < r_max, got {r_range!r}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    pairs = _pairs(traj, pairs)
    has_cell = traj.unitcell_vectors is not None
    if periodic is None:
        periodic = has_cell
    if periodic and not has_cell:
        raise ValueError("periodic=True needs a trajectory with unit cell information; this one has none")
    range_nm = np.array([lo, hi]) * _NM_PER_REDUCED

    if periodic:
        r_nm, g = md.compute_rdf(traj, pairs, r_range=range_nm, n_bins=int(n_bins), periodic=True)
        return r_nm / _NM_PER_REDUCED, g

    d = _infer_spatial_dim(traj) if spatial_dim is None else spatial_dim
    if d not in (1, 2, 3):
        raise ValueError(f"spatial_dim must be 1, 2 or 3, got {spatial_dim!r}")
    if d == 3:
        unit = _NM_PER_REDUCED  # a cube of one reduced length cubed, only for mdtraj's normalisation
        boxed = md.Trajectory(traj.xyz, traj.topology, unitcell_lengths=np.full((traj.n_frames, 3), unit),
                              unitcell_angles=np.full((traj.n_frames, 3), 90.0))
        r_nm, g_nm = md.compute_rdf(boxed, pairs, r_range=range_nm, n_bins=int(n_bins), periodic=False)
        # g_nm = count / (P * F * shell volume in nm^3) * unit^3  ->  per reduced length cubed
        return r_nm / _NM_PER_REDUCED, g_nm.astype(np.float64) * _NM_PER_REDUCED**3 / unit**3
    dist = pair_distances(traj, pairs)  # (F, P) reduced
    counts, edges = np.histogram(dist, bins=int(n_bins), range=(lo, hi))
    shell = _shell_volume(edges, d)
    g = counts.astype(np.float64) / (dist.shape[0] * dist.shape[1] * shell)
    return 0.5 * (edges[1:] + edges[:-1]), g


# ---------------------------------------------------------------- helpers
def _is_pair(v: Any) -> bool:
    try:
        return len(v) == 2
    except TypeError:
        return False


def _pairs(traj: "mdtraj.Trajectory", pairs: Any) -> np.ndarray:
    if pairs is None:
        return all_pairs(traj.n_atoms)
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0 or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"pairs must be a non-empty (P, 2) integer array of atom indices, got shape {p.shape}, "
                         f"dtype {p.dtype}")
    if p.min() < 0 or p.max() >= traj.n_atoms:
        raise ValueError(f"pairs holds atom indices outside [0, {traj.n_atoms - 1}]")
    return p.astype(np.int32)


def _infer_spatial_dim(traj: "mdtraj.Trajectory") -> int:
    """Highest axis holding a nonzero coordinate (2D samples are padded with z = 0)."""
    nonzero = np.any(traj.xyz != 0, axis=(0, 1))  # (3,)
    return int(np.nonzero(nonzero)[0].max()) + 1 if nonzero.any() else 3


def _shell_volume(edges: np.ndarray, d: int) -> np.ndarray:
    """Volume between consecutive radii ``edges`` of a ``d``-ball (reduced length^d)."""
    if d == 3:
        return 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    if d == 2:
        return np.pi * (edges[1:] ** 2 - edges[:-1] ** 2)
    return 2.0 * (edges[1:] - edges[:-1])
