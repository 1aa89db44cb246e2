"""Integrators beyond Euler (exponential, Heun, time grids) and the estimator's variance reduction, on known answers."""

import math

import pytest
import torch

from idem_md.config import IDEMConfig
from idem_md.dem import GeometricNoiseSchedule, estimate_dem_score, sample_prior
from idem_md.dem.schedule import default_grid_sigma_lo, time_grid
from idem_md.dem.sde import integrate_probability_flow, integrate_reverse_sde, score_evaluations
from idem_md.energies.gmm import GaussianMixture


def gaussian_score(schedule, s0):
    """Exact noised score of N(0, s0^2 I): -x / (s0^2 + h(t)), linear in x."""
    return lambda x, t: -x / (s0**2 + schedule.h(t.double()).to(x)[:, None, None])


# ----------------------------------------------------------------------------- time grids
@pytest.mark.parametrize("kind", ["uniform", "edm", "log_sigma"])
@pytest.mark.parametrize("t_end", [0.0, 1e-3])
def test_time_grid_runs_from_one_to_t_end_decreasing(kind, t_end):
    s = GeometricNoiseSchedule(1e-5, 1.0)
    g = time_grid(s, 12, kind, t_end=t_end)
    assert g.shape == (13,) and float(g[0]) == 1.0 and float(g[-1]) == t_end
    assert bool((g[1:] < g[:-1]).all())


def test_edm_grid_with_rho_one_is_uniform_in_sigma_and_t_of_h_inverts_h():
    s = GeometricNoiseSchedule(1e-3, 2.0)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(s.t_of_h(s.h(t)), t, atol=1e-12)
    g = time_grid(s, 10, "edm", t_end=0.1, rho=1.0)
    sig = s.sigma(g)
    assert torch.allclose(sig[1:] - sig[:-1], (sig[1] - sig[0]).expand(10), rtol=1e-9)


def test_uniform_t_grid_is_log_uniform_in_sigma_and_edm_moves_steps_to_large_noise():
    """For the geometric schedule, uniform t spends most steps far below GMM-40's mode width; EDM's grid does not."""
    s = GeometricNoiseSchedule(1e-5, 1.0)
    small = lambda g: int((s.sigma(g) < 0.03).sum())  # noqa: E731  (GMM-40's mode width, working units)
    assert small(time_grid(s, 50, "uniform")) >= 34 and small(time_grid(s, 50, "edm")) <= 28
    log_sig = s.sigma(time_grid(s, 50, "uniform")[1:26]).log()  # t >= 0.5: h >> sigma_min^2
    steps = log_sig[:-1] - log_sig[1:]
    assert torch.allclose(steps, steps.mean().expand(24), rtol=1e-3)


# ----------------------------------------------------------------------------- exponential integrator
@pytest.mark.parametrize("steps", [1, 5])
def test_exponential_flow_is_exact_on_a_gaussian_target_and_euler_is_not(steps):
    """PF-ODE of N(0, s0^2): x_t = x_1 sqrt((s0^2 + h(t)) / (s0^2 + h(1))) exactly; exponential_sigma = s0 hits it."""
    s, s0 = GeometricNoiseSchedule(1e-3, 3.0), 0.4
    x1 = torch.randn(50, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3.0
    exact = x1 * math.sqrt(s0**2 / (s0**2 + float(s.h(torch.tensor(1.0, dtype=torch.float64)))))
    out = integrate_probability_flow(gaussian_score(s, s0), x1, s, steps=steps, method="exponential",
                                     exponential_sigma=s0)
    assert torch.allclose(out, exact, rtol=1e-10, atol=1e-12)
    euler = integrate_probability_flow(gaussian_score(s, s0), x1, s, steps=steps)
    assert float((euler - exact).abs().max()) > 1e-2


def test_exponential_sde_samples_a_gaussian_target_exactly_in_three_steps():
    s, s0 = GeometricNoiseSchedule(1e-3, 3.0), 0.4
    g = torch.Generator().manual_seed(1)
    x1 = sample_prior(40000, (1, 2), s, mean_free=False, generator=g, dtype=torch.float64)
    x0 = integrate_reverse_sde(gaussian_score(s, s0), x1, s, steps=3, method="exponential", exponential_sigma=s0,
                               generator=g)
    # the prior is N(0, h(1)) not N(0, s0^2 + h(1)): the exact map gives variance s0^2 * h(1) / (s0^2 + h(1)) ...
    h1 = float(s.h(torch.tensor(1.0, dtype=torch.float64)))
    # ... plus the noise, exactly: Var = s0^2 (1 - r) + r^2 * h1 with r = s0^2 / (s0^2 + h1) (linear Gaussian map)
    r = s0**2 / (s0**2 + h1)
    want = s0**2 * (1 - r) + r**2 * h1
    assert abs(float(x0.var()) - want) < 0.03 * want
    euler = integrate_reverse_sde(gaussian_score(s, s0), x1, s, steps=3, generator=g)
    assert abs(float(euler.var()) - want) > 0.2 * want


def test_exponential_sde_step_with_zero_noise_is_the_frozen_mean_contraction():
    """eta = 0, one step from t = 1 to 0 with c = 0: x' = m = x + h(1) s(x, 1) (the denoiser, Tweedie's mean)."""
    s = GeometricNoiseSchedule(1e-2, 2.0)
    x = torch.randn(7, 1, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    score = lambda y, t: torch.sin(y) - y  # noqa: E731  any score
    out = integrate_reverse_sde(score, x, s, steps=1, diffusion_scale=0.0, method="exponential")
    h1 = float(s.h(torch.tensor(1.0, dtype=torch.float64)))
    assert torch.allclose(out, x + h1 * score(x, None), atol=1e-12)


# ----------------------------------------------------------------------------- Heun
def _flow_error(method, steps, s, s0, x1, t_min):
    h = lambda t: float(s.h(torch.tensor(t, dtype=torch.float64)))  # noqa: E731
    exact = x1 * math.sqrt((s0**2 + h(t_min)) / (s0**2 + h(1.0)))
    out = integrate_probability_flow(gaussian_score(s, s0), x1, s, steps=steps, method=method, t_min=t_min)
    return float((out - exact).abs().max())


def test_heun_flow_converges_at_second_order_and_euler_at_first():
    s, s0, t_min = GeometricNoiseSchedule(0.1, 2.0), 0.5, 0.05
    x1 = torch.randn(20, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 2.0
    for method, order in (("heun", 2.0), ("euler", 1.0)):
        e1, e2 = _flow_error(method, 20, s, s0, x1, t_min), _flow_error(method, 40, s, s0, x1, t_min)
        assert abs(math.log2(e1 / e2) - order) < 0.25, (method, e1, e2)


def test_heun_sde_samples_the_gaussian_target_and_counts_two_calls_a_step():
    s, s0 = GeometricNoiseSchedule(1e-3, 3.0), 0.4
    calls = []
    score = gaussian_score(s, s0)

    def counted(x, t):
        calls.append(1)
        return score(x, t)

    g = torch.Generator().manual_seed(4)
    x1 = sample_prior(20000, (1, 2), s, mean_free=False, generator=g, dtype=torch.float64)
    x0 = integrate_reverse_sde(counted, x1, s, steps=40, method="heun", time_grid="edm", generator=g)
    assert len(calls) == score_evaluations("heun", 40) == 79
    h1 = float(s.h(torch.tensor(1.0, dtype=torch.float64)))
    r = s0**2 / (s0**2 + h1)
    want = s0**2 * (1 - r) + r**2 * h1
    assert abs(float(x0.var()) - want) < 0.04 * want


def test_integrators_keep_particle_systems_mean_free():
    s = GeometricNoiseSchedule(0.01, 2.0)
    g = torch.Generator().manual_seed(0)
    x1 = sample_prior(16, (5, 3), s, mean_free=True, generator=g)
    for method in ("heun", "exponential"):
        x0 = integrate_reverse_sde(lambda x, t: -x, x1, s, steps=6, mean_free=True, generator=g, method=method,
                                   time_grid="edm")
        assert x0.mean(1).abs().max() < 1e-5


def test_bad_integrator_options_are_one_line_errors():
    s = GeometricNoiseSchedule(0.01, 2.0)
    x = torch.zeros(2, 1, 2)
    with pytest.raises(ValueError, match="method must be one of"):
        integrate_reverse_sde(lambda y, t: y, x, s, steps=2, method="rk4")
    with pytest.raises(ValueError, match="time grid must be one of"):
        integrate_probability_flow(lambda y, t: y, x, s, steps=2, time_grid="cosine")
    with pytest.raises(ValueError, match="rho must be"):
        time_grid(s, 4, "edm", rho=-1.0)
    with pytest.raises(ValueError, match="exponential integrator cannot start from h = 0"):
        integrate_probability_flow(lambda y, t: y, x, s, steps=2, method="exponential", reverse=False)


# ----------------------------------------------------------------------------- estimator variance reduction
def _gaussian_energy(s0=1.0):
    return GaussianMixture(torch.zeros(1, 2, dtype=torch.float64), std=s0).double()


def _repeat_estimates(B, K, h_val, **kw):
    """B independent estimates at the same point x_t = (1, -0.5), exact noised score of N(0, 1)."""
    energy = _gaussian_energy()
    s = GeometricNoiseSchedule(1e-3, 2.0)
    t = s.t_of_h(torch.full((B,), h_val, dtype=torch.float64))
    x = torch.tensor([1.0, -0.5], dtype=torch.float64).expand(B, 1, 2).clone()
    est = estimate_dem_score(energy, x, t, s, K, generator=torch.Generator().manual_seed(9), **kw)
    exact = -x[0, 0] / (1.0 + h_val)
    return est, exact


def test_antithetic_estimator_is_consistent_and_has_lower_variance_at_small_noise():
    plain, exact = _repeat_estimates(4000, 8, 0.05)
    anti, _ = _repeat_estimates(4000, 8, 0.05, antithetic=True)
    for est in (plain, anti):
        mean, se = est.score[:, 0].mean(0), est.score[:, 0].std(0) / math.sqrt(4000)
        assert bool(((mean - exact).abs() < 4 * se + 2e-3).all()), (mean, exact, se)
    ratio = float(anti.score.var(0).sum() / plain.score.var(0).sum())
    assert ratio < 0.2, ratio  # linear forces: the first-order term cancels in each pair
    assert anti.n_evaluations == plain.n_evaluations == 4000 * 8


def test_control_variate_with_the_target_width_is_exact_on_a_gaussian_for_any_k():
    for h_val in (0.01, 1.0, 3.0):
        cv, exact = _repeat_estimates(50, 2, h_val, control_variate_scale=1.0)
        assert torch.allclose(cv.score[:, 0], exact.expand(50, 2), atol=1e-9)
        plain, _ = _repeat_estimates(50, 2, h_val)
        assert float((plain.score[:, 0] - exact).abs().max()) > 1e-3


def test_adaptive_k_stops_rows_that_reach_the_target_ess_and_counts_what_it_spent():
    energy = GaussianMixture(torch.tensor([[0.0, 0.0], [6.0, 0.0]], dtype=torch.float64), std=0.3).double()
    s = GeometricNoiseSchedule(1e-3, 4.0)
    B, K = 40, 400
    t = torch.cat([torch.full((20,), 0.05), torch.full((20,), 1.0)]).double()  # easy rows, then hard rows
    x = torch.randn(B, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.3
    before = energy.n_evaluations
    est = estimate_dem_score(energy, x, t, s, K, generator=torch.Generator().manual_seed(2), target_ess=30.0,
                             min_mc_samples=40)
    assert est.n_evaluations == energy.n_evaluations - before < B * K
    ess_abs = est.ess * K  # upper bound on the row's own count times its normalised ESS
    assert float(est.ess[:20].min()) * 40 >= 30 - 1e-9  # easy rows stopped after their first round with ESS >= 30
    assert bool((ess_abs[20:] > 0).all())


def test_shifted_proposal_is_consistent_for_any_shift_and_lower_variance_at_the_tweedie_shift():
    h_val = 3.0  # large noise: the plain ball of radius sqrt(h) mostly misses the target N(0, 1)
    B, x = 1000, torch.tensor([1.0, -0.5], dtype=torch.float64).expand(1000, 1, 2)
    exact = -x[0, 0] / (1.0 + h_val)
    for shift in (None, torch.full_like(x, 0.7), h_val * exact.expand(B, 1, 2)):  # none, arbitrary, Tweedie
        est, _ = _repeat_estimates(B, 256, h_val, proposal_shift=shift)  # K large: the ratio's bias is small
        mean, se = est.score[:, 0].mean(0), est.score[:, 0].std(0) / math.sqrt(B)
        assert bool(((mean - exact).abs() < 4 * se + 5e-3).all()), (shift is None, mean, exact, se)
    plain, _ = _repeat_estimates(4000, 8, h_val)
    tweedie, _ = _repeat_estimates(4000, 8, h_val, proposal_shift=h_val * exact.expand(4000, 1, 2))
    ratio = float((tweedie.score[:, 0] - exact).pow(2).sum() / (plain.score[:, 0] - exact).pow(2).sum())
    assert ratio < 0.9, ratio  # mean squared error at K = 8, bias included (measured 0.80: the widths still differ)
    assert tweedie.n_evaluations == plain.n_evaluations == 4000 * 8


def test_bad_estimator_options_are_one_line_errors():
    energy = _gaussian_energy()
    s = GeometricNoiseSchedule(1e-3, 2.0)
    x, t = torch.zeros(2, 1, 2, dtype=torch.float64), torch.full((2,), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="num_mc_samples must be even"):
        estimate_dem_score(energy, x, t, s, 7, antithetic=True)
    with pytest.raises(ValueError, match="control_variate_scale must be None or a finite positive"):
        estimate_dem_score(energy, x, t, s, 8, control_variate_scale=-1.0)
    with pytest.raises(ValueError, match="target_ess must be None or a finite number >= 1"):
        estimate_dem_score(energy, x, t, s, 8, target_ess=0.5)
    with pytest.raises(ValueError, match="proposal_shift must be a tensor of the shape of x_t"):
        estimate_dem_score(energy, x, t, s, 8, proposal_shift=torch.zeros(3, 1, 2))


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("field, value, message", [
    ("sde_method", "rk4", "sde_method must be one of"),
    ("sde_time_grid", "cosine", "sde_time_grid must be one of"),
    ("sde_grid_rho", 0.0, "sde_grid_rho must be a finite positive"),
    ("sde_exponential_sigma", -1.0, "sde_exponential_sigma must be a finite non-negative"),
    ("estimator_antithetic", 1, "estimator_antithetic must be a bool"),
    ("estimator_cv_scale", 0.0, "estimator_cv_scale must be a finite positive"),
    ("estimator_target_ess", 0.5, "estimator_target_ess must be >= 1"),
    ("estimator_shift", 1, "estimator_shift must be a bool"),
    ("sample_sde_method", "rk4", "sample_sde_method must be one of"),
    ("sample_sde_time_grid", "cosine", "sample_sde_time_grid must be one of"),
    ("sample_sde_steps", 0, "sample_sde_steps must be >= 1"),
])
def test_config_rejects_bad_integrator_and_estimator_options(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        IDEMConfig(**{field: value})
    with pytest.raises(ValueError, match="even num_mc_samples"):
        IDEMConfig(num_mc_samples=11, estimator_antithetic=True)


def test_a_stored_config_without_the_new_fields_keeps_euler_and_the_plain_estimator():
    stored = IDEMConfig().to_dict()
    for key in ("sde_method", "sde_time_grid", "sde_grid_rho", "sde_exponential_sigma", "estimator_antithetic",
                "estimator_cv_scale", "estimator_target_ess", "estimator_min_mc_samples"):
        stored.pop(key)
    for key in ("sample_sde_method", "sample_sde_time_grid", "sample_sde_steps"):
        stored.pop(key)
    cfg = IDEMConfig.from_dict(stored)
    assert (cfg.sde_method, cfg.sde_time_grid, cfg.estimator_antithetic, cfg.estimator_cv_scale,
            cfg.estimator_target_ess) == ("euler", "uniform", False, None, None)
    assert cfg.sampling_integrator() == ("euler", "uniform", 1000)  # an old run samples as it always did
    assert IDEMConfig.from_dict({**stored, "sde_method": "heun"}).sde_method == "heun"


def test_sampler_passes_the_integrator_choice_through():
    from idem_md.sampler import IDEMSampler

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.calls = 0

        def forward(self, x, t):
            self.calls += 1
            return -x + self.w

    def calls_of_one_sample(**config):
        net = Counting()
        sampler = IDEMSampler("dw4", config=dict(sample_batch_size=4, **config), network=net, device="cpu")
        out = sampler.sample(4, compute_energies=False, progress=False)
        return net.calls, out.metadata["integrator"]

    # sample() falls back to the refill's integrator where its own fields are None (runs from before them)
    refill = dict(sde_method="heun", sde_time_grid="edm", sde_steps=5)
    none = dict(sample_sde_method=None, sample_sde_time_grid=None, sample_sde_steps=None)
    assert calls_of_one_sample(**refill, **none) == (score_evaluations("heun", 5), dict(method="heun",
                                                                                        time_grid="edm", steps=5))
    assert score_evaluations("heun", 5) == 9
    # the default: Heun on the edm grid with half the refill's steps, at most 100 (never more evaluations)
    assert calls_of_one_sample(sde_steps=5)[0] == score_evaluations("heun", 3) == 5
    assert calls_of_one_sample(sde_steps=5, sample_sde_steps=100)[0] == score_evaluations("heun", 100) == 199
    assert calls_of_one_sample(sample_sde_method="euler", sample_sde_steps=7)[0] == 7
    assert IDEMConfig().sampling_integrator() == ("heun", "edm", 100)  # the paper's 1000 Euler steps -> 100 Heun


def test_estimator_shift_passes_the_networks_tweedie_step_to_the_estimator(monkeypatch):
    import idem_md.training as training
    from idem_md.sampler import IDEMSampler

    seen = {}
    real = training.estimate_dem_score

    def spy(energy, x_t, t, schedule, K, **kw):  # the network as it is at the estimator call (before the step)
        seen.update(x_t=x_t, t=t, shift=kw["proposal_shift"], score=sampler.score(x_t, t))
        return real(energy, x_t, t, schedule, K, **kw)

    monkeypatch.setattr(training, "estimate_dem_score", spy)
    cfg = dict(batch_size=6, num_mc_samples=8, inner_steps=1, samples_per_outer=4, sde_steps=2, buffer_size=16,
               sample_batch_size=4, network_options=dict(hidden_irreps="4x0e + 1x1o", n_layers=1, n_radial_basis=4,
                                                         radial_hidden=4, time_embedding_dim=4))
    sampler = IDEMSampler("dw4", config={**cfg, "estimator_shift": True}, device="cpu")
    sampler.fit(1, progress=False)
    h = sampler.schedule.h(seen["t"])
    expected = h[:, None, None] * seen["score"]  # tiny net: below the clip
    expected = expected - expected.mean(1, keepdim=True)
    torch.testing.assert_close(seen["shift"], expected)
    assert sampler.counters["estimator"] == 6 * 8
    IDEMSampler("dw4", config=cfg, device="cpu").fit(1, progress=False)
    assert seen["shift"] is None  # off by default


def test_the_integrator_benchmark_uses_the_exact_gmm40_noised_score():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from integrators import exact_score_fn

    from idem_md import get_energy

    gmm, s = get_energy("gmm40").double(), GeometricNoiseSchedule(1e-5, 1.0)
    x = torch.randn(300, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.4  # working
    t = torch.rand(300, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    want = gmm.noised_score(x[:, 0] * 50.0, s.h(t) * 50.0**2) * 50.0
    torch.testing.assert_close(exact_score_fn(gmm, s, 50.0)(x, t)[:, 0], want, rtol=1e-10, atol=1e-8)


# ----------------------------------------------------------------------------- the grids' last noise level
def test_edm_grid_stops_at_sigma_lo_then_steps_to_zero():
    s = GeometricNoiseSchedule(0.5, 4.0)  # LJ-55's schedule: sigma_min is far from small
    for kind in ("edm", "log_sigma"):
        g = time_grid(s, 20, kind)
        assert float(g[-1]) == 0.0
        assert float(s.sigma(g[-2])) == pytest.approx(default_grid_sigma_lo(s), rel=1e-6)
        assert float(s.sigma(time_grid(s, 20, kind, sigma_lo=0.2)[-2])) == pytest.approx(0.2, rel=1e-6)
    assert default_grid_sigma_lo(s) == pytest.approx(0.01 * float(s.sigma(torch.tensor(1.0))))
    small = GeometricNoiseSchedule(1e-5, 3.0)  # DW-4's: sigma_min itself
    assert default_grid_sigma_lo(small) == 1e-5


@pytest.mark.parametrize("sigma_lo", [0.0, -1.0, 10.0, float("nan")])
def test_time_grid_rejects_bad_sigma_lo(sigma_lo):
    with pytest.raises(ValueError, match="sigma_lo must be in"):
        time_grid(GeometricNoiseSchedule(0.5, 4.0), 10, "edm", sigma_lo=sigma_lo)


def test_config_sigma_lo_is_validated_and_a_small_one_keeps_a_gaussian_exact():
    for too_big in (5.0, 3.99):  # sigma(1) = sqrt(16 - 0.25) = 3.969, just below sigma_max
        with pytest.raises(ValueError, match=r"sde_grid_sigma_lo must be below sigma\(1\)"):
            IDEMConfig(sigma_min=0.5, sigma_max=4.0, sde_grid_sigma_lo=too_big)
    IDEMConfig(sigma_min=0.5, sigma_max=4.0, sde_grid_sigma_lo=3.9)  # accepted, and time_grid accepts it too
    time_grid(GeometricNoiseSchedule(0.5, 4.0), 10, "edm", sigma_lo=3.9)
    with pytest.raises(ValueError, match="sde_grid_sigma_lo must be a finite positive"):
        IDEMConfig(sde_grid_sigma_lo=0.0)
    # a Gaussian target N(0, c^2): the last step from sigma_lo to 0 with the exact score leaves the variance exact
    # only when sigma_lo is small; from sigma_min = 0.5 it overshoots (Euler's last step is the Tweedie mean)
    s, c = GeometricNoiseSchedule(0.5, 4.0), 0.3
    score = lambda x, t: -x / (c * c + s.h(t).to(x.dtype)[:, None, None])  # noqa: E731
    x1 = sample_prior(20000, (1, 1), s, mean_free=False, generator=torch.Generator().manual_seed(0))
    def var(lo):
        x = integrate_reverse_sde(score, x1, s, steps=50, method="heun", time_grid="edm", grid_sigma_lo=lo,
                                  generator=torch.Generator().manual_seed(1))
        return float(x.var())
    assert abs(var(None) - c * c) < 0.1 * c * c < abs(var(0.5) - c * c)
