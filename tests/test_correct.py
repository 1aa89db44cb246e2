"""Correction (idem_md.correct): known answers for SMC, MALA and relax on targets with exact solutions."""

import math

import pytest
import torch

from idem_md import Energy, get_energy
from idem_md.correct import BoltzmannTarget, GaussianProposal, mala, multinomial_resample, relax, smc
from idem_md.metrics import mode_counts


def _mode_tv(gmm, x):
    c = mode_counts(x.reshape(len(x), -1), gmm.means, gmm.std)
    p = c / c.sum()
    return 0.5 * float(abs(p - 1.0 / gmm.n_modes).sum())


def _mode_fraction(gmm, x, k):
    c = mode_counts(x.reshape(len(x), -1), gmm.means, gmm.std)
    return float(c[k] / c.sum())


class _MixtureProposal:
    """GMM-40 with one mode underweighted ``factor`` times and wider components (a deliberately wrong q)."""

    def __init__(self, gmm, factor=10.0, widen=1.3):
        w = torch.ones(gmm.n_modes, dtype=torch.float64)
        w[0] /= factor
        self.log_w = (w / w.sum()).log()
        self.means = gmm.means.double()
        self.std = gmm.std * widen

    def _log_prob(self, x):
        x2 = x.reshape(len(x), -1)
        sq = ((x2[:, None, :] - self.means[None]) ** 2).sum(-1)
        comp = -0.5 * sq / self.std**2 - math.log(2 * math.pi * self.std**2)
        return torch.logsumexp(comp + self.log_w, 1)

    def log_prob_and_grad(self, x):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            lq = self._log_prob(xg)
            (g,) = torch.autograd.grad(lq.sum(), xg)
        return lq.detach(), g

    def sample_with_log_prob(self, n, *, generator=None):
        k = torch.multinomial(self.log_w.exp(), n, replacement=True, generator=generator)
        x = (self.means[k] + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64))[:, None, :]
        return x, self._log_prob(x)


@pytest.mark.parametrize("proposal", ["narrow_gaussian", "underweighted_mode"])
def test_smc_recovers_gmm40_mode_populations_and_log_z(proposal):
    gmm = get_energy("gmm40")
    q = GaussianProposal(torch.zeros(1, 2), 15.0) if proposal == "narrow_gaussian" else _MixtureProposal(gmm)
    g = torch.Generator().manual_seed(0)
    x0, lq0 = q.sample_with_log_prob(20_000, generator=g)
    raw_tv, raw_mode0 = _mode_tv(gmm, x0), _mode_fraction(gmm, x0, 0)
    before = gmm.n_evaluations
    res = smc(gmm, q, samples=(x0, lq0), mcmc_steps=5, generator=g)
    assert res.n_energy_evaluations == gmm.n_evaluations - before > 20_000
    assert res.beta_schedule[-1] == 1.0 and res.ess == pytest.approx(1.0)
    assert _mode_tv(gmm, res.positions) < 0.05
    if proposal == "narrow_gaussian":
        assert raw_tv > 0.2  # the proposal itself is clearly wrong
    else:  # mode 0 holds a tenth of its share in q, its full share after correction
        assert raw_mode0 < 0.005 and _mode_fraction(gmm, res.positions, 0) == pytest.approx(1 / 40, rel=0.25)
    assert abs(res.log_Z) < 0.05  # GMM-40's energy is normalised: log Z = 0
    assert 0 < res.log_Z_error < 0.05


def test_importance_sampling_log_z_error_is_calibrated():
    """Plain importance sampling (one stage, no moves): the genealogy error is the classic IS error."""
    gmm = get_energy("gmm40")
    q = GaussianProposal(torch.zeros(1, 2), 30.0)
    z = []
    for seed in range(6):
        res = smc(gmm, q, 4000, anneal=False, mcmc_steps=0, resample_final=False, ess_threshold=0.0,
                  generator=torch.Generator().manual_seed(seed))
        w = torch.softmax(res.log_weights, 0)
        n = len(w)
        assert res.log_Z_error == pytest.approx(math.sqrt((n * float((w * w).sum()) - 1) / (n - 1)), rel=1e-6)
        z.append(res.log_Z / res.log_Z_error)
    assert max(abs(v) for v in z) < 4.0


class _HarmonicCluster(Energy):
    """Translation-invariant E = kT |x - mean(x)|^2 / (2 s^2): a mean-free Gaussian of std s per coordinate."""

    translation_invariant = True

    def __init__(self, n=4, d=2, s=0.7):
        super().__init__(n, d, 1.0, "harmonic")
        self.s = s

    def _energy(self, x):
        c = x - x.mean(1, keepdim=True)
        return 0.5 * c.pow(2).flatten(1).sum(1) / self.s**2


def test_smc_log_z_on_the_mean_free_subspace():
    e = _HarmonicCluster()
    dof = (e.n_particles - 1) * e.spatial_dim
    exact = 0.5 * dof * math.log(2 * math.pi * e.s**2)  # log of int exp(-E) over the (n-1)d subspace
    q = GaussianProposal(torch.zeros(4, 2), 1.5, mean_free=True)
    res = smc(e, q, 5000, mcmc_steps=5, generator=torch.Generator().manual_seed(1))
    assert res.log_Z == pytest.approx(exact, abs=0.05)
    assert res.positions.mean(1).abs().max() < 1e-10  # particles stay on the subspace
    var = res.positions.pow(2).flatten(1).sum(1).mean() / dof
    assert float(var) == pytest.approx(e.s**2, rel=0.05)
    # a proposal normalised on the full nd space would be off by the missing d dimensions' log-normaliser
    assert abs(res.log_Z - 0.5 * (dof + 2) * math.log(2 * math.pi * e.s**2)) > 0.5


def test_mala_leaves_the_exact_distribution_invariant_and_ula_does_not():
    gmm = get_energy("gmm40")
    g = torch.Generator().manual_seed(0)
    x = gmm.sample(10_000, generator=g).double()[:, None, :]
    e0 = gmm.energy(x)
    target = BoltzmannTarget(gmm)
    res = mala(target, x, n_steps=40, warmup=10, generator=g)
    assert 0.45 < res.acceptance_rate < 0.75
    e1 = -res.log_density
    se = float(e0.std()) / math.sqrt(len(e0)) * math.sqrt(2)
    assert abs(float(e1.mean() - e0.mean())) < 4 * se
    assert float(e1.std()) == pytest.approx(float(e0.std()), rel=0.05)
    assert target.n_evaluations == 10_000 * 41
    # the same test has power: unadjusted Langevin with a large step visibly heats the distribution
    ula = mala(target, x, n_steps=40, step_size=1.5, generator=g, metropolis=False)
    assert float((-ula.log_density).mean() - e0.mean()) > 10 * se


def test_relax_removes_near_overlaps_and_counts_evaluations():
    lj = get_energy("lj13")
    from idem_md.md import default_initial_positions

    x = default_initial_positions(lj).double().reshape(1, 13, 3).repeat(8, 1, 1)
    x = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[:, 1] = x[:, 0] + torch.tensor([0.35, 0.0, 0.0], dtype=torch.float64)  # a near-overlap
    assert float(lj.energy(x).min()) > 1e4
    before = lj.n_evaluations
    res = relax(lj, x, langevin_steps=20, generator=torch.Generator().manual_seed(0))
    assert res.n_minimised == 8 and res.n_energy_evaluations == lj.n_evaluations - before
    assert float(res.energies.max()) < -20  # all bound clusters again (LJ-13 minimum ~ -44.3)
    assert torch.allclose(res.energies, lj.energy(res.positions), atol=1e-6)


def test_multinomial_resample_follows_the_weights():
    log_w = torch.tensor([0.0, math.log(3.0), -math.inf])
    idx = multinomial_resample(log_w, 40_000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(idx, minlength=3).double() / 40_000
    assert counts[2] == 0 and float(counts[1]) == pytest.approx(0.75, abs=0.01)


def test_bad_arguments_are_one_line_errors():
    gmm = get_energy("gmm40")
    q = GaussianProposal(torch.zeros(1, 2), 10.0)
    with pytest.raises(ValueError, match="exactly one of n"):
        smc(gmm, q)
    with pytest.raises(ValueError, match="mcmc_steps"):
        smc(gmm, q, 10, mcmc_steps=-1)
    with pytest.raises(ValueError, match="cess_target"):
        smc(gmm, q, 10, cess_target=1.5)
    with pytest.raises(ValueError, match="samples must be"):
        smc(gmm, q, samples=(torch.zeros(5, 1, 2), torch.zeros(4)))
    with pytest.raises(ValueError, match="only 0 of 5"):
        smc(gmm, q, samples=(torch.zeros(5, 1, 2), torch.full((5,), float("nan"))))
    with pytest.raises(ValueError, match="warmup"):
        mala(BoltzmannTarget(gmm), torch.zeros(3, 1, 2), n_steps=2, warmup=3)
    with pytest.raises(ValueError, match="std"):
        GaussianProposal(torch.zeros(1, 2), -1.0)
    with pytest.raises(TypeError, match="energy must be"):
        BoltzmannTarget("gmm40")


def test_estimate_gives_calibrated_errors_for_smc_and_importance_weights():
    from idem_md.observables import basin_indicator, energy_observable, estimate

    gmm = get_energy("gmm40")
    q = GaussianProposal(torch.zeros(1, 2), 30.0)
    right = gmm.means[:, 0] > 0
    exact = float(right.double().mean())  # equal mode weights: the share of modes with x > 0
    assign = lambda x: (gmm.means[None, :, :] - x.reshape(len(x), 1, 2)).pow(2).sum(-1).argmin(1)  # noqa: E731
    half = basin_indicator(lambda x: right[assign(x)].long(), 2)
    z_smc, z_is = [], []
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        res = smc(gmm, q, 3000, mcmc_steps=3, generator=g)
        est = estimate(half, res.positions, log_weights=res.log_weights, ancestors=res.ancestors)
        assert est.method == "genealogy" and est.value.shape == (2,)
        z_smc.append(float((est.value[1] - exact) / est.error[1]))
        x, lq = q.sample_with_log_prob(3000, generator=g)
        lw = -gmm.energy(x) - lq
        est_is = estimate(half, x, log_weights=lw, generator=g)
        z_is.append(float((est_is.value[1] - exact) / est_is.error[1]))
    assert max(map(abs, z_smc)) < 4 and max(map(abs, z_is)) < 4
    e_est = estimate(energy_observable(gmm), gmm.sample(4000).double()[:, None, :])
    assert isinstance(e_est.value, float) and e_est.error == pytest.approx(float(gmm.log_prob(
        gmm.sample(20000)).std()) / math.sqrt(4000), rel=0.2)
    with pytest.raises(ValueError, match="log_weights must have shape"):
        estimate(half, res.positions, log_weights=torch.zeros(3))


def test_relax_stays_finite_on_a_quartic_wall_and_reports_a_would_be_acceptance():
    """Unadjusted Langevin on DW-4 with 1% of the chains started far out on the quartic wall (no minimisation):
    with a plain drift those chains reach ~1e76 (measured); the tamed drift keeps every chain finite."""
    dw = get_energy("dw4")
    x = 1.5 * torch.randn(2000, 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[:20] *= 6
    res = relax(dw, x, langevin_steps=100, max_force=1e9, generator=torch.Generator().manual_seed(1))
    assert res.n_minimised == 0
    assert torch.isfinite(res.positions.float()).all() and float(res.positions.abs().max()) < 50
    assert 0.8 < res.acceptance_rate < 1.0  # a probability (target 0.95), not the share of finite proposals
    assert float(res.energies.median()) < float(dw.energy(x).median())


def test_smc_n_final_draws_fewer_outputs_than_proposals():
    gmm = get_energy("gmm40")
    q = GaussianProposal(torch.zeros(1, 2), 30.0)
    res = smc(gmm, q, 4000, anneal=False, mcmc_steps=2, n_final=500, generator=torch.Generator().manual_seed(0))
    assert res.positions.shape == (500, 1, 2) and res.log_weights.shape == (500,) and res.ancestors.shape == (500,)
    plain = smc(gmm, q, 500, anneal=False, mcmc_steps=2, generator=torch.Generator().manual_seed(0))
    assert len(torch.unique(res.ancestors)) > 2 * len(torch.unique(plain.ancestors))  # fewer duplicates
    with pytest.raises(ValueError, match="n_final"):
        smc(gmm, q, 10, n_final=1)


def test_relax_then_mala_leaves_overlaps_behind_where_mala_alone_stays_stuck():
    """A MALA chain started in a near-overlap rejects every move; relax+mala moves on (pipeline)."""
    from types import SimpleNamespace

    from idem_md.correct import CorrectionOptions, corrected_samples
    from idem_md.io import Samples
    from idem_md.md import default_initial_positions

    lj = get_energy("lj13")
    x = default_initial_positions(lj).double().reshape(1, 13, 3).repeat(6, 1, 1)
    x = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[:, 1] = x[:, 0] + torch.tensor([0.35, 0.0, 0.0], dtype=torch.float64)  # E > 1e4: an overlap

    def sample(n, **kw):
        return Samples(x[:n].float(), None, {"n_diverged": 0})

    fake = SimpleNamespace(energy=lj, sample=sample, counters={}, outer_iteration=0, density=None)
    out = {}
    for method in ("mala", "relax+mala"):
        opts = CorrectionOptions(method=method, mala_steps=20, relax_steps=10, seed=0)
        out[method] = corrected_samples(fake, 6, opts, progress=False)
    assert float(out["mala"].energies.min()) > 1e3  # stuck in the overlap
    assert float(out["relax+mala"].energies.max()) < -20  # bound clusters
    info = out["relax+mala"].metadata["correction"]
    assert info["method"] == "relax+mala" and info["relax"]["n_minimised"] == 6
    assert info["n_energy_evaluations"] > info["relax"]["n_energy_evaluations"] > 0
