"""Tests of the OpenMM Langevin MD baselines (idem_md.md)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openmm")

from idem_md import get_energy  # noqa: E402
from idem_md.energies import Energy, PairPotential  # noqa: E402
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


DATA = Path(__file__).resolve().parents[1] / "data"


def test_lj13_mean_energy_near_reference():
    """The mean energy against the shipped MD reference (data/md_lj13.npz, 10,000 samples), with a
    tolerance from the energy variance and the measured autocorrelation: a thermostat off by a
    fraction f shifts the mean by about f Var(E) / kT (48 f), and the test checks it would see a 5 %
    error. (LJ-13's energy decorrelates in ~800 steps, so 2 % needs ~1.5e6 steps, too slow for a unit
    test; test_thermostat_mean_energy_detects_a_2_percent_temperature_error checks 2 % on an exact model.)"""
    ref = np.load(DATA / "md_lj13.npz")["energies"]
    ref_mean, ref_var = float(ref.mean()), float(ref.var())
    ref_se = math.sqrt(ref_var * 1.03 / ref.size)  # tau over the reference samples: 1.03 (docs/md_baselines.md)
    run = run_md(get_energy("lj13"), 400, MDConfig(n_equilibration_steps=5000, thinning=300, seed=1), progress=False)
    tau = max(1.0, run.metadata["sample_autocorrelation"]["energy"])  # in samples
    tol = 3.5 * math.hypot(math.sqrt(ref_var * tau / run.n_samples), ref_se)
    assert tol < 0.05 * ref_var / get_energy("lj13").kT, (tol, tau)  # the test has the power it claims
    assert abs(float(run.energies.mean()) - ref_mean) < tol


class _Springs(Energy):
    """A user-style harmonic pair cluster, E = (k/2) sum_{i<j} |x_i - x_j|^2 = (k n/2) sum_i |x_i - xbar|^2:
    (n-1) d internal modes of angular frequency sqrt(k n) (unit masses), so <E> = (n-1) d kT/2 and
    Var(E) = (n-1) d kT^2/2 exactly, and BAOAB-type integrators sample it without time-step error."""

    translation_invariant = True

    def __init__(self, n=8, omega=1.0):
        super().__init__(n, 3, kT=1.0, name="springs")
        self.k = omega**2 / n

    def _energy(self, x):
        c = x - x.mean(1, keepdim=True)
        return 0.5 * self.k * self.n_particles * c.pow(2).sum((-2, -1))

    def openmm_pair_potential(self):
        return PairPotential("hk*r2", {"hk": 0.5 * self.k}, "springs")


@pytest.mark.parametrize("engine, chains", [("openmm", 1), ("torch", 64)])
def test_thermostat_mean_energy_detects_a_2_percent_temperature_error(engine, chains):
    energy = _Springs()
    half_dof = 0.5 * (energy.n_particles - 1) * energy.spatial_dim  # <E> / kT = Var(E) / kT^2
    n = 3500
    cfg = MDConfig(timestep=0.05, friction=2.0, n_equilibration_steps=300, thinning=60, engine=engine,
                   n_chains=chains, minimize=False, seed=2)
    run = run_md(energy, n, cfg, progress=False)
    torch.testing.assert_close(run.energies, energy.energy(run.positions.double()), rtol=1e-4, atol=1e-4)
    tau = max(1.0, run.metadata["sample_autocorrelation"]["energy"])
    tol = 3.0 * math.sqrt(half_dof * tau / n)
    assert tol < 0.02 * half_dof  # a 2 % temperature error (<E> proportional to T) would fail
    assert abs(float(run.energies.mean()) - half_dof) < tol


def test_pilot_autocorrelation_time_matches_the_analytic_one():
    """For the spring cluster at critical damping (gamma = 2 omega) each mode's position
    autocorrelation is exp(-t)(1 + t), the energy's its square: tau = 1 + 2 sum_m rho(m dt_report)."""
    energy = _Springs()
    dt, k = 0.05, 10
    cfg = MDConfig(timestep=dt, friction=2.0, n_equilibration_steps=500, n_pilot_steps=100_000, report_interval=k,
                   thinning_observables=("energy",), minimize=False, platform="Reference", seed=3)
    run = run_md(energy, 2, cfg, progress=False)
    t = dt * k * np.arange(1, 2000)
    tau_frames = 1.0 + 2.0 * np.sum((np.exp(-t) * (1.0 + t)) ** 2)
    assert run.autocorrelation_time == pytest.approx(tau_frames * k, rel=0.3)
    assert run.thinning == math.ceil(2.0 * run.autocorrelation_time)


@pytest.mark.filterwarnings("ignore:MD pilot run")  # a 20,000-step pilot is short for LJ-13 (tau ~ 800)
def test_auto_thinning_uses_pilot_autocorrelation():
    cfg = MDConfig(n_equilibration_steps=1000, n_pilot_steps=20_000, report_interval=10, thinning_factor=2.0,
                   thinning_observables=("energy",))
    run = run_md(get_energy("lj13"), 20, cfg, progress=False)
    # The 1e6-step pilot of data/md_lj13.json measured 791 steps; a 20,000-step pilot is noisy (and biased low).
    assert 791 / 3 < run.autocorrelation_time < 791 * 2
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


# ------------------------------------------------------ every target
def test_blown_up_run_stops_with_one_line_error_on_every_engine():
    from idem_md.md import MDBlowUpError

    for engine in ("openmm", "torch"):
        cfg = MDConfig(timestep=0.05, n_equilibration_steps=5000, thinning=10, engine=engine)
        with pytest.raises(MDBlowUpError, match=r"MD blew up after \d+ steps of lj13 .*reduce MDConfig.timestep"):
            run_md(get_energy("lj13"), 10, cfg, progress=False)


def test_cli_md_blow_up_exits_2_with_one_line(tmp_path, capsys):
    from idem_md.cli import main

    out = tmp_path / "md.npz"
    assert main(["md", "--system", "lj13", "-n", "10", "--timestep", "0.05", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("idem-md md: error: MD blew up") and not out.exists()


def test_openmm_energy_runs_md_on_its_own_system_in_kelvin():
    from idem_md.energies import OpenMMEnergy

    lj = get_energy("lj13")
    target = OpenMMEnergy(lj.to_openmm_system(), temperature=150.0, platform="Reference",
                          positions=lj.initial_configuration(0).numpy())
    assert target.default_md_engine == "openmm" and target.translation_invariant
    run = run_md(target, 30, MDConfig(**SHORT), progress=False)
    assert run.metadata["engine"] == "openmm" and run.metadata["temperature_K"] == pytest.approx(150.0)
    torch.testing.assert_close(run.energies, target.energy(run.positions.double()), rtol=1e-6, atol=1e-6)  # kT
    with pytest.raises(ValueError, match="no starting configuration"):
        run_md(OpenMMEnergy(lj.to_openmm_system(), 150.0), 1, MDConfig(**SHORT), progress=False)


def test_ase_target_runs_ase_langevin():
    from ase import Atoms
    from ase.calculators.lj import LennardJones

    from idem_md.energies import ASEEnergy

    atoms = Atoms("Ar3", positions=[[0, 0, 0], [3.8, 0, 0], [1.9, 3.3, 0]])
    target = ASEEnergy(atoms, LennardJones(sigma=3.4, epsilon=0.0104, rc=30.0), temperature=60.0)
    run = run_md(target, 20, MDConfig(timestep=0.002, n_equilibration_steps=500, thinning=50), progress=False)
    assert run.metadata["engine"] == "ase" and run.metadata["temperature_K"] == pytest.approx(60.0)
    torch.testing.assert_close(run.energies, target.energy(run.positions.double()), rtol=1e-6, atol=1e-6)
    assert run.n_energy_evaluations >= 500 + 20 * 50


def test_any_energy_runs_torch_baoab_and_gmm40_gets_a_baseline():
    gmm = get_energy("gmm40")
    assert gmm.default_md_engine == "torch" and not gmm.translation_invariant
    run = run_md(gmm, 40, MDConfig(n_equilibration_steps=500, thinning=50, n_chains=8), progress=False)
    assert run.positions.shape == (40, 1, 2) and run.metadata["n_chains"] == 8
    torch.testing.assert_close(run.energies, gmm.energy(run.positions.double()), rtol=1e-5, atol=1e-5)
    # the counter: steps x chains + minimiser + the first force evaluation after it
    m = run.metadata
    assert run.n_energy_evaluations == m["n_steps"] * 8 + m["n_minimization_evaluations"] + m["n_setup_evaluations"]
    with pytest.raises(ValueError, match="n_chains must be 1"):
        run_md(get_energy("dw4"), 2, MDConfig(**SHORT, n_chains=2, engine="openmm"), progress=False)
    assert run_md(get_energy("dw4"), 4, MDConfig(**SHORT, n_chains=2), progress=False).metadata["engine"] == "torch"


def test_progress_bar_covers_every_phase_and_quiet_silences_it(capsys):
    run_md(get_energy("dw4"), 3, MDConfig(n_equilibration_steps=2000, thinning=10), progress=False)
    assert capsys.readouterr().err == ""
    run_md(get_energy("dw4"), 3, MDConfig(n_equilibration_steps=2000, thinning=10), progress=True)
    assert "MD dw4" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["torch", "ase"])
def test_engines_count_every_force_evaluation(engine):
    energy = get_energy("dw4")
    energy.reset_counter()
    run = run_md(energy, 10, MDConfig(n_equilibration_steps=300, thinning=20, engine=engine), progress=False)
    assert run.n_energy_evaluations == energy.n_evaluations  # what the energy itself counted
    assert run.n_energy_evaluations >= 300 + 10 * 20 + run.metadata["n_minimization_evaluations"]
