"""Tests for idem_md.metrics, against answers known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from idem_md import get_energy
from idem_md import metrics as M


def _rotations(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, d, d)`` random proper rotations (QR of Gaussian matrices, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(n, d, d)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def _rotated_permuted(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each configuration rotated, permuted and translated: the same point up to symmetry."""
    n_conf, n, d = x.shape
    rot = _rotations(n_conf, d, rng)
    y = np.einsum("cij,cnj->cni", rot, x)
    y = np.stack([c[rng.permutation(n)] for c in y])
    return y + rng.normal(size=(n_conf, 1, d))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# ----------------------------------------------------------------- zero on self
def test_self_distance_is_zero(rng):
    x = rng.normal(size=(150, 13, 3))
    e = rng.normal(size=300)
    assert M.coordinate_w2(x, x) < 1e-6
    assert M.coordinate_w2(torch.as_tensor(x).reshape(150, 39), x.reshape(150, 39), 13, 3) < 1e-6
    assert M.energy_w2(e, e) == 0.0
    assert M.energy_w2_idem_convention(torch.as_tensor(e), e) == 0.0
    assert M.distance_w2(x, x) == 0.0
    assert M.distance_tvd(x, x) == 0.0
    assert M.geometric_w2(x[:20], x[:20]) < 1e-6


# ----------------------------------------------------------- Gaussian answers
@pytest.mark.parametrize("m", [1.0, 3.0])
def test_energy_w2_of_shifted_gaussians(m, rng):
    a, b = rng.normal(size=4000), rng.normal(size=4000) + m
    assert M.energy_w2(a, b) == pytest.approx(m, abs=0.1)
    assert M.energy_w2_idem_convention(a, b) == pytest.approx(M.energy_w2(a, b) ** 2, rel=1e-12)
    # unequal sizes go through POT's exact 1D solver
    assert M.energy_w2(a, b[:3000]) == pytest.approx(m, abs=0.1)


def test_energy_w2_exact_small_case():
    # quantile functions of {0,1,2} and {1,2,3,4}: W2^2 = 2.5 by hand
    assert M.energy_w2([0.0, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(2.5), rel=1e-12)
    assert M.energy_w2_idem_convention([0.0, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0]) == pytest.approx(2.5, rel=1e-12)
    assert M.energy_w2([0.0, 2.0], [1.0, 5.0]) == pytest.approx(math.sqrt((1 + 9) / 2))


def test_coordinate_w2_of_shifted_gaussians(rng):
    shift = np.array([3.0, -4.0])  # |m| = 5
    x, y = rng.normal(size=(600, 2)), rng.normal(size=(500, 2)) + shift
    assert M.coordinate_w2(x, y) == pytest.approx(5.0, abs=0.2)
    x1, y1 = rng.normal(size=(800, 1)), rng.normal(size=(800, 1)) + 2.0
    assert M.coordinate_w2(x1, y1) == pytest.approx(M.energy_w2(x1[:, 0], y1[:, 0]), rel=1e-9)


def test_coordinate_w2_centres_particle_systems(rng):
    x = rng.normal(size=(50, 4, 2))
    moved = x + rng.normal(size=(50, 1, 2)) * 10  # translate every configuration
    assert M.coordinate_w2(x, moved) < 1e-6
    assert M.coordinate_w2(x, moved, centre=False) > 1.0


def test_coordinate_w2_nonconvergence_raises(rng):
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(60, 2))
    with pytest.raises(RuntimeError, match="did not converge"):
        M.coordinate_w2(x, y, num_itermax=3)


# ------------------------------------------------------------------ geometric
@pytest.mark.parametrize("n, d", [(13, 3), (4, 2)])
def test_geometric_w2_of_rotated_permuted_copy_is_zero(n, d, rng):
    x = rng.normal(size=(15, n, d)) * 1.5
    y = _rotated_permuted(x, rng)[rng.permutation(15)]
    assert M.geometric_w2(x, y) < 1e-6
    assert M.coordinate_w2(x, y) > 1.0
    # flat input with the shape given gives the same
    assert M.geometric_w2(x.reshape(15, -1), torch.as_tensor(y).reshape(15, -1), n, d) < 1e-6


def test_geometric_w2_reflections(rng):
    x = rng.normal(size=(10, 5, 3))
    mirror = x * np.array([-1.0, 1.0, 1.0])
    assert M.geometric_w2(x, mirror, reflections=True) < 1e-6
    assert M.geometric_w2(x, mirror, reflections=False) > 0.1


def test_geometric_w2_bounded_by_coordinate_w2(rng):
    x, y = rng.normal(size=(25, 6, 3)), rng.normal(size=(20, 6, 3)) * 1.3
    g, c = M.geometric_w2(x, y), M.coordinate_w2(x, y)
    assert 0 < g < c
    # per pair, the aligned cost never exceeds the plain centred cost
    cost = M.aligned_sq_dists(x, y)
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    plain = ((xc[:, None] - yc[None]) ** 2).sum((2, 3))
    assert np.all(cost <= plain + 1e-9)


def test_geometric_w2_subsampling_is_seeded(rng):
    x, y = rng.normal(size=(40, 4, 2)), rng.normal(size=(40, 4, 2))
    a = M.geometric_w2(x, y, max_samples=15, seed=3)
    assert a == M.geometric_w2(x, y, max_samples=15, seed=3)
    assert a != M.geometric_w2(x, y, max_samples=15, seed=4)
    with pytest.raises(ValueError, match="n_particles >= 2"):
        M.geometric_w2(rng.normal(size=(5, 2)), rng.normal(size=(5, 2)))


# ------------------------------------------------------------------ distances
def test_interatomic_distances_values_and_types():
    x = np.array([[[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]])  # pairs (0,1), (0,2), (1,2)
    d = M.interatomic_distances(x)
    np.testing.assert_allclose(d, [[5.0, 1.0, math.sqrt(9 + 9)]])
    dt = M.interatomic_distances(torch.tensor(x, dtype=torch.float32).reshape(1, 6), n_particles=3, spatial_dim=2)
    assert isinstance(dt, torch.Tensor) and dt.dtype == torch.float32 and dt.shape == (1, 3)
    np.testing.assert_allclose(dt.numpy(), d, rtol=1e-6)
    assert M.interatomic_distances(np.zeros((7, 13, 3))).shape == (7, 78)


def test_distance_w2_of_scaled_copy(rng):
    x = rng.normal(size=(40, 13, 3))
    d = M.interatomic_distances(x).ravel()
    # distances of 2x are exactly twice those of x, so the sorted difference is d itself
    assert M.distance_w2(x, 2 * x) == pytest.approx(math.sqrt(np.mean(d**2)), rel=1e-12)


def test_tvd_known_values(rng):
    u = rng.uniform(0, 1, size=500)
    assert M.histogram_tvd(u, u + 2.0) == 1.0  # disjoint
    assert M.histogram_tvd(u, u) == 0.0
    # half of v's mass sits on u's support: TVD 0.5 at any binning
    v = np.concatenate([u[:250], u[:250] + 5.0])
    assert M.histogram_tvd(np.concatenate([u[:250], u[:250]]), v, bins=37) == pytest.approx(0.5)
    # mass outside an explicit range goes to overflow bins rather than vanishing
    assert M.histogram_tvd(u, u + 2.0, range=(0.0, 1.0)) == 1.0
    x = rng.normal(size=(30, 4, 2))
    assert M.distance_tvd(x, 100 * x) == 1.0  # all distances disjoint after scaling
    with pytest.raises(ValueError, match="bins"):
        M.histogram_tvd(u, u, bins=0)
    with pytest.raises(ValueError, match="range"):
        M.histogram_tvd(u, u, range=(1.0, 1.0))


# ---------------------------------------------------------------- mode coverage
def test_mode_coverage_gmm40():
    gmm = get_energy("gmm40")
    g = torch.Generator().manual_seed(0)
    x = gmm.sample(1000, generator=g)
    assert M.mode_coverage(x, gmm.means) == 1.0
    assert M.mode_coverage(x, gmm.means, std=gmm.std) == 1.0
    counts = M.mode_counts(x, gmm.means)
    assert counts.sum() == 1000 and counts.shape == (40,)
    # samples from only 10 modes: the 10 most isolated ones, since a few GMM-40 means lie closer
    # than one std to another and would share their samples under nearest-mean assignment
    gap = torch.cdist(gmm.means, gmm.means).fill_diagonal_(float("inf")).min(1).values
    chosen = gap.argsort(descending=True)[:10]
    z = torch.randn(1000, 2, generator=g)
    ten = gmm.means[chosen[torch.arange(1000) % 10]] + gmm.std * z
    assert M.mode_coverage(ten, gmm.means) == 0.25
    assert M.mode_coverage(ten, gmm.means, threshold=0.0) == 1.0  # every mode holds >= 0 samples


def test_mode_counts_std_excludes_far_samples():
    means = np.array([[0.0, 0.0], [10.0, 0.0]])
    x = np.array([[0.1, 0.0], [9.0, 0.5], [100.0, 100.0], [0.0, -0.2]])
    np.testing.assert_array_equal(M.mode_counts(x, means), [2, 2])
    np.testing.assert_array_equal(M.mode_counts(x, means, std=1.0), [2, 1])
    assert M.mode_coverage(x, means, std=1.0, threshold=0.3) == 0.5  # 1/4 < 0.3
    with pytest.raises(ValueError, match="same d"):
        M.mode_counts(np.zeros((3, 3)), means)
    with pytest.raises(ValueError, match="threshold"):
        M.mode_coverage(x, means, threshold=2.0)


# -------------------------------------------------------------------------- ESS
def test_effective_sample_size():
    assert M.effective_sample_size(np.zeros(100)) == pytest.approx(1.0)
    assert M.effective_sample_size(torch.full((50,), 123.4)) == pytest.approx(1.0)
    dominant = np.zeros(100)
    dominant[7] = 1000.0  # a weight e^1000 larger than the rest, no overflow
    assert M.effective_sample_size(dominant) == pytest.approx(1 / 100)
    lw = np.full(10, -np.inf)
    lw[:5] = 0.0  # half the weights zero -> ESS = 5 / 10
    assert M.effective_sample_size(lw) == pytest.approx(0.5)
    w = np.random.default_rng(0).exponential(size=1000)
    expected = w.sum() ** 2 / (w**2).sum() / 1000
    assert M.effective_sample_size(np.log(w)) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="all -inf"):
        M.effective_sample_size(np.full(4, -np.inf))
    with pytest.raises(ValueError, match="NaN"):
        M.effective_sample_size([0.0, np.nan])


# ---------------------------------------------------------------------- batched
def test_batched_mean_std(rng):
    x, y = rng.normal(size=(5000, 1)), rng.normal(size=(6000, 1)) + 2.0
    mean, std = M.batched(M.coordinate_w2, x, y, n_batches=5, batch_size=500, seed=0)
    assert mean == pytest.approx(2.0, abs=0.15) and 0 < std < 0.2
    assert (mean, std) == M.batched(M.coordinate_w2, x, y, n_batches=5, batch_size=500, seed=0)
    # batches are disjoint: a metric that records its batches sees every index once
    seen = []
    idx = torch.arange(1000.0)[:, None]
    M.batched(lambda a, b: seen.append(a[:, 0].long()) or 0.0, idx, idx, n_batches=4, batch_size=250,
              generator=torch.Generator().manual_seed(0))
    assert torch.cat(seen).sort().values.tolist() == list(range(1000))
    m1, s1 = M.batched(M.energy_w2, x[:, 0], y[:, 0], n_batches=1, batch_size=100)
    assert s1 == 0.0 and m1 > 1.0


def test_batched_too_few_samples(rng):
    x = rng.normal(size=(900, 2))
    with pytest.raises(ValueError, match=r"x has 900 samples, fewer than .* = 1000"):
        M.batched(M.coordinate_w2, x, x, n_batches=5, batch_size=200)
    with pytest.raises(ValueError, match="y has 10 samples"):
        M.batched(M.coordinate_w2, x, x[:10], n_batches=2, batch_size=100)
    with pytest.raises(ValueError, match="n_batches"):
        M.batched(M.coordinate_w2, x, x, n_batches=0)


# ------------------------------------------------------------------ bad inputs
def test_bad_inputs(rng):
    x = rng.normal(size=(10, 4, 2))
    with pytest.raises(ValueError, match="same shape"):
        M.coordinate_w2(x, rng.normal(size=(10, 13, 3)))
    with pytest.raises(ValueError, match="not n_particles \\* spatial_dim"):
        M.coordinate_w2(x.reshape(10, 8), x.reshape(10, 8), n_particles=3, spatial_dim=2)
    with pytest.raises(ValueError, match="does not match n_particles=13"):
        M.coordinate_w2(x, x, n_particles=13)
    with pytest.raises(ValueError, match="x is empty"):
        M.coordinate_w2(np.zeros((0, 8)), x.reshape(10, 8))
    with pytest.raises(ValueError, match="e2 is empty"):
        M.energy_w2([1.0], [])
    bad = x.copy()
    bad[3, 1, 0] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        M.geometric_w2(x, bad)
    with pytest.raises(ValueError, match="e1 contains NaN or infinite"):
        M.energy_w2(torch.tensor([0.0, float("inf")]), [1.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        M.energy_w2(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"x\[:, None\]"):
        M.coordinate_w2(np.zeros(5), np.zeros(5))
    with pytest.raises(TypeError, match="real numeric"):
        M.coordinate_w2(np.array([["a", "b"]]), x)
    with pytest.raises(ValueError, match="n_particles >= 2"):
        M.distance_w2(x.reshape(10, 8), x.reshape(10, 8))
