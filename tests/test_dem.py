"""DEM algorithm pieces: schedule, estimator (against the exact GMM score), SDE/ODE, buffer."""

import math

import pytest
import torch

from idem_md import get_energy
from idem_md.dem import (
    GeometricNoiseSchedule,
    ReplayBuffer,
    clip_score,
    estimate_dem_score,
    integrate_probability_flow,
    integrate_reverse_sde,
    prior_log_prob,
    probability_flow_log_prob,
    remove_mean,
    sample_prior,
    sample_probability_flow,
)
from idem_md.energies import Energy

SCALE = 50.0  # GMM-40 working coordinates are x / 50


def test_schedule_h_is_integral_of_g_squared():
    s = GeometricNoiseSchedule(1e-3, 3.0)
    t = torch.linspace(0, 1, 20001, dtype=torch.float64)
    g2 = s.g(t) ** 2
    integral = torch.cumulative_trapezoid(g2, t)
    assert torch.allclose(integral[-1], s.h(torch.tensor(1.0, dtype=torch.float64)), rtol=1e-6)
    assert float(s.h(torch.tensor(0.0))) == 0.0
    assert math.isclose(float(s.h(torch.tensor(1.0, dtype=torch.float64))), 3.0**2 - 1e-6, rel_tol=1e-9)


@pytest.mark.parametrize("bad", [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0), (1.0, float("inf"))])
def test_schedule_rejects_bad_sigmas(bad):
    with pytest.raises(ValueError, match="sigma_min"):
        GeometricNoiseSchedule(*bad)


def exact_gmm_noised_score(gmm, y, h):
    """Exact score of p_t in working coordinates y = x / 50 (noise variance h in working units)."""
    return gmm.noised_score(y * SCALE, h * SCALE**2) * SCALE


@pytest.mark.parametrize("t_value", [0.3, 0.6, 0.9])
def test_estimator_error_falls_with_K_against_exact_gmm_score(t_value):
    gmm = get_energy("gmm40").double()
    schedule = GeometricNoiseSchedule(1e-5, 1.0)
    g = torch.Generator().manual_seed(0)
    B = 128
    t = torch.full((B,), t_value, dtype=torch.float64)
    x0 = gmm.sample(B, generator=g).double() / SCALE
    y = x0 + schedule.h(t).sqrt()[:, None] * torch.randn(B, 2, generator=g, dtype=torch.float64)
    exact = exact_gmm_noised_score(gmm, y, schedule.h(t))
    errors = []
    for K in (10, 100, 1000, 5000):
        est = estimate_dem_score(gmm, y[:, None, :], t, schedule, K, coordinate_scale=SCALE, generator=g)
        errors.append(float((est.score[:, 0] - exact).norm(dim=1).mean()))
        assert est.n_evaluations == B * K
        assert est.ess.shape == (B,) and bool(((est.ess >= 1.0 / K - 1e-12) & (est.ess <= 1 + 1e-12)).all())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.35 * errors[0], errors


class _Recording(Energy):
    """Wraps an energy and records every batch it is asked to evaluate."""

    translation_invariant = True

    def __init__(self, inner):
        super().__init__(inner.n_particles, inner.spatial_dim, inner.kT)
        self.inner, self.seen = inner, []

    def _energy_and_forces(self, x):
        self.seen.append(x.clone())
        return self.inner.energy_and_forces(x)


@pytest.mark.parametrize("chunk", [7, 40, 64, 200, 10**6])
def test_streaming_softmax_equals_plain_softmax_for_any_chunking(chunk):
    lj = get_energy("lj13")
    rec = _Recording(lj)
    schedule = GeometricNoiseSchedule(0.01, 2.0)
    B, K = 5, 40
    x = torch.randn(B, 13, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1.5
    t = torch.full((B,), 0.2, dtype=torch.float64)
    est = estimate_dem_score(rec, x, t, schedule, K, chunk_size=chunk, generator=torch.Generator().manual_seed(3),
                             score_clip=None)
    assert max(len(b) for b in rec.seen) <= max(chunk, 1)
    # Rebuild each row's K perturbations from what the energy saw (chunks are row-blocks x K-blocks).
    y = torch.cat(rec.seen)  # (B*K, 13, 3), in an order we recover by nearest row
    row = ((y[:, None] - x[None]) ** 2).flatten(2).sum(-1).argmin(1)
    e, f = lj.energy_and_forces(y)
    ref = torch.zeros_like(x)
    for b in range(B):
        sel = row == b
        assert int(sel.sum()) == K
        w = torch.softmax(-e[sel], dim=0)
        ref[b] = torch.einsum("k,knd->nd", w, f[sel])
    assert torch.allclose(est.score, ref, rtol=1e-10, atol=1e-10)


class _HalfBroken(Energy):
    """A harmonic well that returns NaN for configurations with x[0, 0] > 0."""

    def __init__(self):
        super().__init__(2, 2)

    def _energy(self, x):
        e = 0.5 * (x**2).sum((-2, -1))
        return torch.where(x[:, 0, 0] > 0, torch.full_like(e, float("nan")), e)


def test_estimator_gives_zero_weight_to_nonfinite_energies():
    energy = _HalfBroken()
    schedule = GeometricNoiseSchedule(0.01, 1.0)
    x = torch.zeros(4, 2, 2, dtype=torch.float64)
    x[:, 0, 0] = -5.0  # all perturbations finite for these rows at small noise...
    x[2:, 0, 0] = 5.0  # ...and all non-finite for these
    t = torch.full((4,), 0.5, dtype=torch.float64)
    est = estimate_dem_score(energy, x, t, schedule, 50, generator=torch.Generator().manual_seed(0), score_clip=None)
    assert est.n_nonfinite == 100 and est.n_all_nonfinite == 2
    assert torch.isfinite(est.score).all()
    assert torch.equal(est.score[2:], torch.zeros_like(est.score[2:]))
    assert est.score[0, 0, 0] > 0  # pulled back towards the well


def test_clip_score_per_particle_and_whole_vector():
    s = torch.tensor([[[30.0, 40.0], [0.3, 0.4]]])
    c = clip_score(s, 10.0, per_particle=True)
    assert torch.allclose(c[0].norm(dim=-1), torch.tensor([10.0, 0.5]))
    c2 = clip_score(s, 10.0, per_particle=False)
    assert math.isclose(float(c2.flatten().norm()), 10.0, rel_tol=1e-6)
    assert clip_score(s, None, True) is s


def test_reverse_sde_with_exact_score_samples_gaussian():
    """Target N(0, s0^2 I): p_t = N(0, (s0^2 + h) I), exact score -x / (s0^2 + h)."""
    schedule = GeometricNoiseSchedule(1e-3, 5.0)
    s0 = 0.7
    score = lambda x, t: -x / (s0**2 + schedule.h(t)[:, None, None])  # noqa: E731
    g = torch.Generator().manual_seed(0)
    x1 = sample_prior(4000, (1, 2), schedule, mean_free=False, generator=g, dtype=torch.float64)
    x0 = integrate_reverse_sde(score, x1, schedule, steps=500, generator=g)
    assert abs(float(x0.std()) - s0) < 0.04
    ode = integrate_probability_flow(score, x1, schedule, steps=500)
    assert abs(float(ode.std()) - s0) < 0.04


def test_reverse_sde_mean_free_for_particles():
    schedule = GeometricNoiseSchedule(0.01, 2.0)
    g = torch.Generator().manual_seed(0)
    x1 = sample_prior(16, (5, 3), schedule, mean_free=True, generator=g)
    x0 = integrate_reverse_sde(lambda x, t: -x, x1, schedule, steps=20, mean_free=True, generator=g)
    assert x0.mean(1).abs().max() < 1e-5


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_probability_flow_log_prob_of_gaussian(divergence):
    schedule = GeometricNoiseSchedule(1e-2, 4.0)
    s0 = 0.8
    score = lambda x, t: -x / (s0**2 + schedule.h(t)[:, None, None])  # noqa: E731
    x = torch.randn(64, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * s0
    logp = probability_flow_log_prob(score, x, schedule, steps=400, divergence=divergence, t_min=0.0,
                                     generator=torch.Generator().manual_seed(5))
    exact = -0.5 * (x**2).flatten(1).sum(1) / s0**2 - 1.5 * math.log(2 * math.pi * s0**2)
    tol = 0.05 if divergence == "exact" else 0.6  # Hutchinson is unbiased but noisy per sample
    assert float((logp - exact).abs().mean()) < tol


@pytest.mark.parametrize("mean_free", [False, True])
def test_sample_probability_flow_returns_the_density_of_its_own_samples(mean_free):
    """Exact Gaussian score: the flow's samples follow N(0, s0^2) and log q is their exact density
    (up to the prior's h(1) vs h(1) + s0^2 mismatch and Euler error), so importance weights
    against the true density are nearly flat (ESS ~ 1)."""
    schedule = GeometricNoiseSchedule(1e-2, 4.0)
    s0 = 0.8

    def score(x, t):  # translation invariant for particles, like the networks
        return -(remove_mean(x) if mean_free else x) / (s0**2 + schedule.h(t)[:, None, None])

    n = 4 if mean_free else 1
    g = torch.Generator().manual_seed(3)
    x1 = sample_prior(512, (n, 3), schedule, mean_free, generator=g, dtype=torch.float64)
    x0, log_q = sample_probability_flow(score, x1, schedule, steps=400, mean_free=mean_free, t_min=0.0)
    dof = (n - 1) * 3 if mean_free else 3
    exact = -0.5 * (x0**2).flatten(1).sum(1) / s0**2 - 0.5 * dof * math.log(2 * math.pi * s0**2)
    err = log_q - exact  # a constant offset (prior mismatch) does not change self-normalised weights
    assert abs(float(err.mean())) < 0.3 and float(err.std()) < 0.25
    assert abs(float((x0**2).flatten(1).sum(1).mean()) / dof - s0**2) < 0.15 * s0**2
    w = torch.softmax(exact - log_q, 0)
    assert float(1.0 / (len(w) * (w**2).sum())) > 0.95
    # The encoding direction gives the same numbers for the same points.
    back = probability_flow_log_prob(score, x0, schedule, steps=400, mean_free=mean_free, t_min=0.0)
    assert float((back - log_q).abs().mean()) < 0.25
    # A wrong density (the score of a broader Gaussian) is caught: weights are no longer flat.
    wide = lambda x, t: score(x, t) * (s0**2 + schedule.h(t)[:, None, None]) / (4 * s0**2 + schedule.h(t)[:, None, None])  # noqa: E731
    x0w, log_qw = sample_probability_flow(wide, x1, schedule, steps=400, mean_free=mean_free, t_min=0.0)
    exact_w = -0.5 * (x0w**2).flatten(1).sum(1) / s0**2 - 0.5 * dof * math.log(2 * math.pi * s0**2)
    ww = torch.softmax(exact_w - log_qw, 0)
    assert float(1.0 / (len(ww) * (ww**2).sum())) < 0.8


def test_prior_log_prob_mean_free_dof():
    schedule = GeometricNoiseSchedule(0.01, 1.0)
    x = torch.zeros(1, 4, 3)
    lp = prior_log_prob(x, schedule, mean_free=True)
    var = float(schedule.h(torch.tensor(1.0, dtype=torch.float64)))
    assert math.isclose(float(lp), -0.5 * 9 * math.log(2 * math.pi * var), rel_tol=1e-6)


def test_replay_buffer_fifo_and_state():
    buf = ReplayBuffer(5, (1, 1))
    buf.add(torch.arange(3.0).reshape(3, 1, 1))
    buf.add(torch.arange(3.0, 7.0).reshape(4, 1, 1))
    assert len(buf) == 5
    assert buf.contents().flatten().tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    g = torch.Generator().manual_seed(0)
    draws = buf.sample(5000, generator=g).flatten()
    counts = torch.bincount(draws.long(), minlength=7)[2:]
    assert counts.min() > 850  # uniform with replacement
    other = ReplayBuffer(5, (1, 1))
    other.load_state_dict(buf.state_dict())
    assert torch.equal(other.contents(), buf.contents())
    with pytest.raises(ValueError, match="shape"):
        buf.add(torch.zeros(2, 2, 1))
    with pytest.raises(RuntimeError, match="empty"):
        ReplayBuffer(3, (1, 1)).sample(1)


def test_probability_flow_likelihood_with_the_exact_gmm40_score_is_a_usable_density():
    """Known answer: with the exact noised score, the PF-ODE density of GMM-40 (iDEM's schedule, working
    units of 50) matches the true NLL on exact samples and gives importance weights with a high ESS."""
    from idem_md.dem.sde import probability_flow_log_prob, sample_probability_flow, sample_prior
    from idem_md.metrics import effective_sample_size

    gmm = get_energy("gmm40")
    scale = 50.0
    sched = GeometricNoiseSchedule(1e-5, 1.0)

    def exact_score(y, t):  # working coordinates y = x / scale; score in 1 / working length
        B = y.shape[0]
        return (scale * gmm.noised_score(y.reshape(B, 2).double() * scale, sched.h(t.double()) * scale**2)
                ).reshape(B, 1, 2).to(y)

    g = torch.Generator().manual_seed(0)
    x = gmm.sample(500, generator=g).double()
    logq = probability_flow_log_prob(exact_score, (x / scale)[:, None, :], sched, steps=200) - 2 * math.log(scale)
    true_nll = float(-gmm.log_prob(x).mean())
    assert float(-logq.mean()) == pytest.approx(true_nll, abs=0.1)
    y0, lq = sample_probability_flow(exact_score, sample_prior(500, (1, 2), sched, False, generator=g,
                                                               dtype=torch.float64), sched, steps=200)
    lw = -gmm.energy(y0.reshape(500, 2) * scale) - (lq - 2 * math.log(scale))
    assert effective_sample_size(lw) > 0.75


def test_jacobian_bound_holds_for_the_exact_noised_score_and_catches_an_over_contracting_field():
    from idem_md.dem.diagnostics import jacobian_bound_violation

    gmm = get_energy("gmm40")
    sched = GeometricNoiseSchedule(0.1, 50.0)  # reduced units
    g = torch.Generator().manual_seed(0)
    for t in (0.3, 0.7, 1.0):
        h = float(sched.h(torch.tensor(t)))
        x = (gmm.sample(64, generator=g) + h**0.5 * torch.randn(64, 2, generator=g)).double()[:, None, :]

        def exact(y, tt):
            return gmm.noised_score(y.reshape(len(y), 2), sched.h(tt).to(y)).reshape(len(y), 1, 2)

        good = jacobian_bound_violation(exact, x, t, sched)
        assert good.violation_fraction == 0.0 and good.median_min_eigenvalue >= good.bound
        bad = jacobian_bound_violation(lambda y, tt: -2.0 * y / sched.h(tt).to(y)[:, None, None], x, t, sched)
        assert bad.violation_fraction == 1.0 and bad.median_min_eigenvalue == pytest.approx(2 * bad.bound)


def test_gaussian_skip_score_has_the_gaussian_limit_and_respects_the_bound_at_large_t():
    from idem_md.dem.diagnostics import jacobian_bound_violation
    from idem_md.nn.skip import GaussianSkipScore

    sched = GeometricNoiseSchedule(1e-3, 3.0)

    def inner(y, tt):  # contracts at rate 0.5: as a bare score it breaks the bound -1/h(1) = -0.11
        return -0.5 * y + torch.sin(y)

    module = torch.nn.Module()
    module.forward = inner
    net = GaussianSkipScore(module, sched, sigma_data=0.5)
    x = remove_mean(3.0 * torch.randn(32, 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    t1 = torch.ones(32, dtype=torch.float64)
    var = 0.25 + float(sched.h(torch.tensor(1.0, dtype=torch.float64)))
    assert torch.allclose(net(x, t1), -x / var + (0.25 / var) ** 2 * inner(x, t1))
    assert jacobian_bound_violation(inner, x, 1.0, sched, mean_free=True).violation_fraction > 0.9
    skip = jacobian_bound_violation(net, x, 1.0, sched, mean_free=True)
    assert skip.violation_fraction == 0.0 and skip.median_min_eigenvalue > skip.bound
    small = net(x, torch.full((32,), 1e-3, dtype=torch.float64))  # small t: the network's own correction
    assert torch.allclose(small, -x / (0.25 + float(sched.h(torch.tensor(1e-3)))) + inner(x, t1), atol=1e-3)
    with pytest.raises(ValueError, match="sigma_data"):
        GaussianSkipScore(module, sched, 0.0)


def test_degrees_of_freedom_is_the_one_formula_every_density_uses():
    from idem_md.correct import GaussianProposal
    from idem_md.dem import GeometricNoiseSchedule
    from idem_md.dem.sde import degrees_of_freedom, prior_log_prob

    assert degrees_of_freedom(13, 3, True) == 36 and degrees_of_freedom(13, 3, False) == 39
    assert GaussianProposal(torch.zeros(4, 2), 1.0, mean_free=True).dof == 6
    # the prior's normalisation on the mean-free subspace: log N(0; 0, var I_dof) at x = 0
    sched = GeometricNoiseSchedule(0.01, 2.0)
    var = float(sched.h(torch.tensor(1.0, dtype=torch.float64)))
    lp = prior_log_prob(torch.zeros(1, 4, 2, dtype=torch.float64), sched, mean_free=True)
    assert float(lp) == pytest.approx(-0.5 * 6 * math.log(2 * math.pi * var))
