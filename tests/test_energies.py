"""The benchmark energies: reference statistics, forces, symmetries, known minima, bad input."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from idem_md import get_energy
from idem_md.energies import GaussianMixture, LennardJonesCluster, MultiDoubleWell, available_energies

from conftest import require_reference


def load_reference(name, n, d):
    x = torch.from_numpy(np.load(require_reference(name))).double().reshape(-1, n, d)
    return x - x.mean(1, keepdim=True)


@pytest.mark.parametrize("system,file,mean,std", [
    ("dw4", "test_split_DW4.npy", -22.450, 1.901),
    ("lj13", "test_split_LJ13.npy", -43.127, 7.018),
])
def test_reference_energy_statistics(system, file, mean, std):
    energy = get_energy(system)
    x = load_reference(file, energy.n_particles, energy.spatial_dim)
    e = energy.energy(x)
    assert round(float(e.mean()), 3) == mean
    assert round(float(e.std()), 3) == std


def random_configs(energy, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    if isinstance(energy, LennardJonesCluster):
        # jittered cubic lattice: no overlapping pairs
        side = math.ceil(energy.n_particles ** (1 / 3))
        grid = torch.stack(torch.meshgrid(*[torch.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[: energy.n_particles]
        return grid.double()[None] * 1.1 + 0.1 * torch.randn(n, energy.n_particles, 3, generator=g, dtype=torch.float64)
    return 2.0 * torch.randn(n, energy.n_particles, energy.spatial_dim, generator=g, dtype=torch.float64)


ALL = ["gmm40", "dw4", "lj13", "lj55"]


@pytest.mark.parametrize("system", ALL)
def test_forces_match_central_finite_differences(system):
    energy = get_energy(system).double()
    x = random_configs(energy, n=3)
    _, f = energy.energy_and_forces(x)
    eps = 1e-6
    flat = x.reshape(3, -1)
    for k in range(0, flat.shape[1], max(1, flat.shape[1] // 12)):
        dx = torch.zeros_like(flat)
        dx[:, k] = eps
        fd = -(energy.energy(flat + dx) - energy.energy(flat - dx)) / (2 * eps)
        assert torch.allclose(f.reshape(3, -1)[:, k], fd, rtol=1e-5, atol=1e-5), (system, k)


@pytest.mark.parametrize("system", ALL)
def test_analytic_forces_equal_autograd(system):
    from idem_md.energies import Energy

    energy = get_energy(system).double()
    x = random_configs(energy)
    e1, f1 = energy.energy_and_forces(x)
    e2, f2 = Energy._energy_and_forces(energy, x)
    assert torch.allclose(e1, e2, rtol=1e-12) and torch.allclose(f1, f2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("system", ["dw4", "lj13", "lj55"])
def test_particle_energies_symmetries_and_zero_net_force(system):
    from idem_md.testing import assert_equivariant, assert_invariant

    energy = get_energy(system).double()
    x = random_configs(energy, n=4)
    _, f = energy.energy_and_forces(x)
    assert f.sum(1).abs().max() < 1e-8 * max(1.0, float(f.abs().max()))
    kw = dict(n_particles=energy.n_particles, spatial_dim=energy.spatial_dim, x=x, reflections=True,
              generator=torch.Generator().manual_seed(1))
    assert_invariant(energy.energy, atol=1e-8, rtol=1e-10, **kw)
    assert_equivariant(lambda y: energy.energy_and_forces(y)[1], atol=1e-7, rtol=1e-8, com_free=True, **kw)


def mackay_icosahedron(r=1.0):
    phi = (1 + 5**0.5) / 2
    v = []
    for a in (-1, 1):
        for b in (-phi, phi):
            v += [(0, a, b), (a, b, 0), (b, 0, a)]
    v = torch.tensor(v, dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True) * r
    return torch.cat([torch.zeros(1, 3, dtype=torch.float64), v])


def test_lj13_local_minimisation_reaches_global_minimum():
    from scipy.optimize import minimize

    energy = LennardJonesCluster(13, pair_factor=1.0, oscillator_scale=0.0, softening=0.0).double()
    x0 = mackay_icosahedron(0.98)

    def fun(flat):
        e, f = energy.energy_and_forces(torch.from_numpy(flat).reshape(1, 13, 3))
        return float(e), -f.reshape(-1).numpy()

    res = minimize(fun, x0.reshape(-1).numpy(), jac=True, method="L-BFGS-B", options=dict(gtol=1e-10, ftol=1e-15))
    assert round(res.fun, 6) == -44.326801


def test_gmm40_definition_and_exact_samples():
    gmm = get_energy("gmm40")
    assert gmm.n_modes == 40 and gmm.dim == 2
    assert torch.allclose(gmm.means[0], torch.tensor([-0.2995, 21.4577]), atol=1e-4)
    assert math.isclose(gmm.std, math.log1p(math.e), rel_tol=1e-6)
    x = gmm.sample(20000, generator=torch.Generator().manual_seed(0))
    nearest = torch.cdist(x, gmm.means).argmin(1)
    assert torch.bincount(nearest, minlength=40).min() > 300
    # normalised: exp(log_prob) integrates to one (midpoint rule on a 0.2-spaced grid covering every mode +- 20 std)
    g = torch.arange(-70.0, 70.0, 0.2, dtype=torch.float64) + 0.1
    grid = torch.cartesian_prod(g, g)
    total = float(gmm.log_prob(grid).exp().sum() * 0.2**2)
    assert total == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(gmm.energy(gmm.means[:1]), -gmm.log_prob(gmm.means[:1]))
    # exact samples have the mixture's moments: mean = mean of the means, cov = std^2 I + cov of the means
    mu, xd = gmm.means.double(), x.double()
    cov = gmm.std**2 * torch.eye(2, dtype=torch.float64) + torch.cov(mu.T, correction=0)
    se = (cov.diagonal() / len(x)).sqrt()
    assert ((xd.mean(0) - mu.mean(0)).abs() < 4 * se).all(), (xd.mean(0), mu.mean(0), se)
    assert torch.allclose(torch.cov(xd.T), cov, atol=0.05 * float(cov.diagonal().mean())), (torch.cov(xd.T), cov)
    # ... and every mode the width std: residuals around the modes with no other mode within 8 std
    # (the total covariance above is dominated by the spread of the means and would not notice)
    others = torch.cdist(mu, mu) + torch.diag(torch.full((40,), math.inf, dtype=torch.float64))
    isolated = others.min(1).values > 8 * gmm.std  # (40,)
    near = nearest[isolated[nearest]]
    residual = xd[isolated[nearest]] - mu[near]  # (m, 2)
    assert isolated.sum() >= 3 and len(residual) > 1000
    ratio = residual.pow(2).mean(0) / gmm.std**2
    assert ((ratio > 0.9) & (ratio < 1.1)).all(), ratio


def test_energies_count_evaluations():
    lj = get_energy("lj13")
    lj.energy(torch.randn(5, 39))
    lj.energy_and_forces(torch.randn(7, 13, 3))
    assert lj.n_evaluations == 12
    assert lj.reset_counter() == 12 and lj.n_evaluations == 0


def test_registry_names_and_unknown():
    assert set(ALL) <= set(available_energies())
    assert get_energy("LJ-13").name == "lj13"
    assert get_energy("lj7").n_particles == 7 and get_energy("dw6").n_particles == 6
    with pytest.raises(ValueError, match="unknown system 'argon'.*gmm40"):
        get_energy("argon")
    with pytest.raises(TypeError, match="name must be a str"):
        get_energy(13)


@pytest.mark.parametrize("bad,err,match", [
    (torch.zeros(3, 38), ValueError, r"shape \(B, 39\) or \(B, 13, 3\)"),
    (torch.zeros(3, 12, 3), ValueError, "13 particles"),
    (torch.zeros(39), ValueError, "add a batch dimension"),
    (torch.zeros(3, 39, dtype=torch.int64), TypeError, "floating-point"),
    (np.zeros((3, 39)), TypeError, "torch.Tensor"),
    (torch.full((2, 39), float("nan")), ValueError, "NaN or infinite"),
    (torch.tensor([[float("inf")] + [0.0] * 38]), ValueError, "NaN or infinite"),
])
def test_bad_input_is_named(bad, err, match):
    lj = get_energy("lj13")
    with pytest.raises(err, match=match):
        lj.energy(bad)
    with pytest.raises(err, match=match):
        lj.energy_and_forces(bad)


@pytest.mark.parametrize("kT", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_temperature_is_refused(kT):
    with pytest.raises(ValueError, match="kT must be a finite positive"):
        get_energy("lj13", kT=kT)
    with pytest.raises(ValueError, match="kT"):
        MultiDoubleWell(kT=kT)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="n_particles"):
        LennardJonesCluster(1)
    with pytest.raises(ValueError, match="std"):
        GaussianMixture(torch.zeros(3, 2), std=0.0)
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(torch.zeros(3), std=1.0)


def test_kT_scales_log_prob():
    x = random_configs(get_energy("dw4"))
    e1, e2 = get_energy("dw4"), get_energy("dw4", kT=2.0)
    assert torch.allclose(e2.log_prob(x), e1.log_prob(x) / 2)


def test_gmm_noised_score_is_the_score_of_the_broadened_mixture():
    gmm = get_energy("gmm40").double()
    x = 1.5 * gmm.sample(64, generator=torch.Generator().manual_seed(0)).double()
    _, forces = gmm.energy_and_forces(x)
    torch.testing.assert_close(gmm.noised_score(x, 0.0), forces)  # kT = 1: score = forces
    h = 2.5
    broad = GaussianMixture(gmm.means.double(), std=(gmm.std**2 + h) ** 0.5).double()
    torch.testing.assert_close(gmm.noised_score(x, h), broad.energy_and_forces(x)[1])
    per_row = torch.full((64,), h, dtype=torch.float64)
    torch.testing.assert_close(gmm.noised_score(x, per_row), gmm.noised_score(x, h))
    with pytest.raises(ValueError, match="x must have shape"):
        gmm.noised_score(x[:, :1], h)


def test_registry_finds_what_it_registered_and_every_factory_takes_kT():
    from idem_md.energies.registry import register_energy

    register_energy("my_dw", lambda **kw: get_energy("dw4", **kw))
    for name in ("my_dw", "MY-DW", "mydw"):
        assert get_energy(name).n_particles == 4
    for name in ("gmm40", "dw4", "lj13", "lj55", "lj7", "dw8", "my_dw"):
        assert get_energy(name, kT=2.0).kT == 2.0
    gmm2 = get_energy("gmm40", kT=2.0)
    x = torch.randn(5, 2)
    assert torch.allclose(gmm2.log_prob(x), get_energy("gmm40").log_prob(x))  # E = -kT log p: same density
    with pytest.raises(TypeError, match="factory must be callable"):
        register_energy("x", 3)
    with pytest.raises(TypeError, match="non-empty str"):
        register_energy("-_", lambda **kw: None)
