"""Tests of the OpenMM Langevin MD baselines (idem_md.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("openmm")

from idem_md import get_energy  # noqa: E402
from idem_md.md import (  # noqa: E402
    MDConfig,
    default_initial_positions,
    integrated_autocorrelation_time,
    observable_series,
    run_md,
    run_md_with_budget,
)

# Short runs: fixed thinning keeps them to ~1e5 steps (well under a second each).
SHORT = dict(n_equilibration_steps=2000, thinning=200, platform="Reference")


def _ar1(phi: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=n)
    x = np.empty(n)
    x[0] = noise[0] / math.sqrt(1 - phi * phi)  # start in the stationary distribution
    for t in range(1, n):
        x[t] = phi * x[t - 1] + noise[t]
    return x


# ------------------------------------------------------ autocorrelation
@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_autocorrelation_time_of_ar1(phi):
    tau_true = (1 + phi) / (1 - phi)
    tau = integrated_autocorrelation_time(_ar1(phi, 100_000, seed=1))
    assert abs(tau - tau_true) <= 0.2 * tau_true


def test_autocorrelation_time_short_series_warns_and_bad_input_raises():
    with pytest.warns(RuntimeWarning, match="unreliable"):
        integrated_autocorrelation_time(_ar1(0.99, 200, seed=0))
    with pytest.raises(ValueError, match="constant"):
        integrated_autocorrelation_time(np.ones(100))
    with pytest.raises(ValueError, match="series must be 1D"):
        integrated_autocorrelation_time(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="NaN"):
        integrated_autocorrelation_time([1.0, 2.0, np.nan, 3.0, 4.0])
    with pytest.raises(ValueError, match="c must be"):
        integrated_autocorrelation_time(np.arange(10.0), c=0)


# ------------------------------------------------------ short runs
@pytest.mark.parametrize("name", ["dw4", "lj13"])
def test_short_run_shapes_energies_and_centring(name):
    energy = get_energy(name)
    run = run_md(energy, 100, MDConfig(**SHORT), progress=False)
    n, d = energy.n_particles, energy.spatial_dim
    assert run.positions.shape == (100, n, d) and run.positions.dtype == torch.float32
    assert run.energies.shape == (100,)
    assert run.n_samples == 100 and run.thinning == 200
    # OpenMM's kJ/mol energies are the reduced energies of the returned positions.
    expected = energy.energy(run.positions.double())
    torch.testing.assert_close(run.energies, expected, rtol=1e-4, atol=1e-4)
    assert run.positions.double().mean(1).abs().max() < 1e-5
    # Samples are distinct configurations (the dynamics moved).
    assert run.energies.std() > 0.1
    assert run.metadata["platform"] == "Reference"
    assert run.wall_time > 0


def test_lj13_mean_energy_near_reference():
    # Reference MCMC mean -43.13 (std 7.0); 300 samples 300 steps apart have a
    # standard error below 1, so +-5 only fails for a broken thermostat or unit mapping.
    run = run_md(get_energy("lj13"), 300, MDConfig(n_equilibration_steps=5000, thinning=300), progress=False)
    assert abs(float(run.energies.mean()) + 43.1) < 5.0


def test_auto_thinning_uses_pilot_autocorrelation():
    cfg = MDConfig(n_equilibration_steps=1000, n_pilot_steps=20_000, report_interval=10, thinning_factor=2.0,
                   thinning_observables=("energy",))
    run = run_md(get_energy("lj13"), 20, cfg, progress=False)
    # Energy relaxation of LJ-13 at friction 1/ps takes O(1 ps) = O(200) steps.
    assert 20 < run.autocorrelation_time < 5000
    assert run.thinning == math.ceil(2.0 * run.autocorrelation_time)
    assert run.metadata["n_pilot_steps"] == 20_000
    assert run.metadata["pilot_autocorrelation_steps"] == {"energy": run.autocorrelation_time}


@pytest.mark.filterwarnings("ignore:MD pilot run")  # DW-4's structure relaxes over ~2e4 steps
def test_auto_thinning_takes_the_slowest_observable():
    cfg = MDConfig(n_equilibration_steps=1000, n_pilot_steps=20_000, report_interval=20)  # all observables
    run = run_md(get_energy("dw4"), 20, cfg, progress=False)
    taus = run.metadata["pilot_autocorrelation_steps"]
    assert set(taus) == {"energy", "radius_of_gyration", "mean_pair_distance"}
    assert run.autocorrelation_time == max(taus.values())
    assert run.thinning == math.ceil(2.0 * max(taus.values()))


def test_observable_series_values():
    # Two particles 3 apart on the x axis: Rg = 1.5, mean pair distance = 3.
    x = np.array([[[0.0, 0.0], [3.0, 0.0]]])
    series = observable_series(x, [7.0])
    assert series["energy"][0] == 7.0
    assert series["radius_of_gyration"][0] == pytest.approx(1.5)
    assert series["mean_pair_distance"][0] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="observable"):
        observable_series(x, [7.0], ("temperature",))
    with pytest.raises(ValueError, match="thinning_observables"):
        MDConfig(thinning_observables=("temperature",))


# ------------------------------------------------------ accounting
def test_evaluation_counter_equals_steps_without_minimisation():
    cfg = MDConfig(n_equilibration_steps=500, thinning=7, minimize=False)
    run = run_md(get_energy("dw4"), 30, cfg, progress=False)
    assert run.n_energy_evaluations == 500 + 30 * 7
    assert run.metadata["n_steps"] == run.n_energy_evaluations
    assert run.metadata["n_minimization_evaluations"] == 0


@pytest.mark.filterwarnings("ignore:MD pilot run")  # deliberately short pilot
def test_evaluation_counter_with_minimisation_and_pilot():
    cfg = MDConfig(n_equilibration_steps=300, n_pilot_steps=1000, report_interval=10, max_minimization_evaluations=25)
    run = run_md(get_energy("lj13"), 5, cfg, progress=False)
    n_min = run.metadata["n_minimization_evaluations"]
    assert 1 <= n_min <= 25
    assert run.n_energy_evaluations == n_min + 300 + 1000 + 5 * run.thinning
    assert run.metadata["n_energy_queries"] == 1000 // 10 + 5


@pytest.mark.filterwarnings("ignore:MD pilot run")  # deliberately short pilot
@pytest.mark.parametrize("budget", [3_000, 10_000, 54_321])
def test_budget_mode_never_exceeds_budget(budget):
    cfg = MDConfig(n_equilibration_steps=1000, n_pilot_steps=1000, report_interval=10, thinning_observables="energy")
    run = run_md_with_budget(get_energy("dw4"), budget, cfg, progress=False)
    assert run.n_energy_evaluations <= budget
    assert budget - run.n_energy_evaluations < run.thinning  # what is left cannot buy a sample
    assert run.n_samples >= 1 and run.metadata["budget"] == budget


def test_budget_mode_rejects_too_small_budget():
    with pytest.raises(ValueError, match="n_energy_evaluations"):
        run_md_with_budget(get_energy("dw4"), 100, MDConfig(n_equilibration_steps=1000), progress=False)
    with pytest.raises(ValueError, match="n_energy_evaluations"):
        run_md_with_budget(get_energy("dw4"), 0, progress=False)


# ------------------------------------------------------ determinism
def test_seeded_runs_are_reproducible_on_reference_platform():
    energy = get_energy("lj13")
    a = run_md(energy, 10, MDConfig(**SHORT, seed=3), progress=False)
    b = run_md(energy, 10, MDConfig(**SHORT, seed=3), progress=False)
    c = run_md(energy, 10, MDConfig(**SHORT, seed=4), progress=False)
    assert torch.equal(a.positions, b.positions) and torch.equal(a.energies, b.energies)
    assert not torch.equal(a.positions, c.positions)


# ------------------------------------------------------ inputs
def test_default_initial_positions_are_compact_and_overlap_free():
    for name, min_allowed in [("lj13", 0.85), ("lj55", 0.85), ("dw4", 2.0)]:
        energy = get_energy(name)
        x = default_initial_positions(energy, seed=0)
        assert x.shape == (energy.n_particles, energy.spatial_dim)
        dist = torch.pdist(x)
        assert dist.min() >= min_allowed
    # LJ-55: a compact cluster, not a gas
    assert torch.pdist(default_initial_positions(get_energy("lj55"))).max() < 6.0


def test_initial_positions_are_used():
    energy = get_energy("lj13")
    x0 = default_initial_positions(energy, seed=7)
    cfg = MDConfig(n_equilibration_steps=0, thinning=1, minimize=False)
    run = run_md(energy, 1, cfg, initial_positions=x0, progress=False)
    # One 0.005 ps step from rest-ish velocities moves atoms by ~0.01 nm.
    assert (run.positions[0].double() - (x0 - x0.mean(0))).abs().max() < 0.1


def test_bad_inputs_raise_clear_errors():
    lj = get_energy("lj13")
    with pytest.raises(ValueError, match="n_samples"):
        run_md(lj, 0, progress=False)
    with pytest.raises(TypeError, match="energy must be"):
        run_md("lj13", 10, progress=False)
    with pytest.raises(ValueError, match="thinning"):
        MDConfig(thinning=0)
    with pytest.raises(ValueError, match="timestep"):
        MDConfig(timestep=-0.001)
    with pytest.raises(ValueError, match="initial_positions"):
        run_md(lj, 1, MDConfig(**SHORT), initial_positions=np.zeros((12, 3)), progress=False)
    with pytest.raises(ValueError, match="platform"):
        run_md(lj, 1, MDConfig(n_equilibration_steps=0, thinning=1, platform="NoSuchPlatform"), progress=False)
    bad_kT = get_energy("lj13")
    bad_kT.kT = -1.0  # bypasses the constructor's check on purpose
    with pytest.raises(ValueError, match="kT"):
        run_md(bad_kT, 1, progress=False)


def test_to_samples_round_trip():
    io = pytest.importorskip("idem_md.io")
    run = run_md(get_energy("dw4"), 5, MDConfig(**SHORT), progress=False)
    samples = run.to_samples()
    assert isinstance(samples, io.Samples)
    assert torch.equal(torch.as_tensor(samples.positions).reshape(5, 4, 2), run.positions)
    assert samples.metadata["source"] == "md" and samples.metadata["system"] == "dw4"
    assert samples.metadata["energy_evaluations"] == run.n_energy_evaluations
    torch.testing.assert_close(samples.energies.double(), run.energies)


def test_drifted_cluster_is_recentred_without_changing_its_energy(monkeypatch):
    from idem_md.md import engine as md_engine

    def state_of(engine):
        state = engine.context.getState(getPositions=True, getEnergy=True)
        return np.asarray(state.getPositions(asNumpy=True)._value), state.getPotentialEnergy()._value  # nm, kJ/mol

    monkeypatch.setattr(md_engine, "RECENTRE_DISTANCE", 1e-9)  # treat any offset as drift
    dw = get_energy("dw4")
    engine = md_engine.make_engine(dw, MDConfig(platform="Reference"), default_initial_positions(dw)[None].numpy())
    assert isinstance(engine, md_engine.OpenMMEngine)
    engine.thermalize()
    engine.step(md_engine.CHECK_INTERVAL - 1)  # not yet a full interval: no check
    x_before = state_of(engine)[0]
    assert np.abs(x_before.mean(0)).max() > 1e-3
    engine.step(1)  # completes the interval: recentred
    x_after = state_of(engine)[0]
    np.testing.assert_allclose(x_after[:, :2].mean(0), 0.0, atol=1e-12)
    assert np.all(x_after[:, 2] == 0.0)  # the free z axis is reset
    # Recentring alone leaves the energy unchanged (translation invariance, force-free z).
    x_now, e_now = state_of(engine)
    engine.context.setPositions(x_now + np.array([50.0, -20.0, 7.0]))
    engine._recentre_if_drifted(engine._read()[0])
    assert state_of(engine)[1] == pytest.approx(e_now, rel=1e-12, abs=1e-10)
    assert engine.n_steps == md_engine.CHECK_INTERVAL
