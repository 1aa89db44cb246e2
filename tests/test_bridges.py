"""Bridges to ASE and OpenMM: torch, ASE and OpenMM agree on energies and forces."""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")
pytest.importorskip("ase")

from ase import Atoms  # noqa: E402
from ase.calculators.calculator import Calculator, all_changes  # noqa: E402
from ase.calculators.lj import LennardJones  # noqa: E402

from idem_md.energies import (  # noqa: E402
    ASEEnergy,
    EnergyEvaluationError,
    GaussianMixture,
    LennardJonesCluster,
    MultiDoubleWell,
    OpenMMEnergy,
    get_energy,
)
from idem_md.energies.ase_bridge import EnergyCalculator, make_atoms  # noqa: E402
from idem_md.energies.openmm_bridge import PARTICLE_MASS_AMU, available_platforms  # noqa: E402
from idem_md.units import (  # noqa: E402
    BOLTZMANN_EV_PER_K,
    MOLAR_GAS_CONSTANT_KJ_PER_MOL_K,
    temperature_for_reduced_kT,
)

from conftest import require_reference
RTOL = 1e-5
N_CONFIGS = 100


def assert_close(actual, expected, rtol: float = RTOL, what: str = "") -> None:
    """``|a - b| <= rtol * max(1, |b|)`` elementwise."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    err = np.abs(a - b) / np.maximum(1.0, np.abs(b))
    assert err.max() <= rtol, f"{what}: max relative error {err.max():.3e} > {rtol}"


def spaced_points(n_configs: int, n: int, d: int, box: float, min_dist: float, seed: int) -> torch.Tensor:
    """Uniform random points in a box, no two closer than ``min_dist``: ``(B, n, d)`` float64."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_configs, n, d))
    for b in range(n_configs):
        pts: list[np.ndarray] = []
        while len(pts) < n:
            p = rng.uniform(0.0, box, d)
            if all(np.linalg.norm(p - q) >= min_dist for q in pts):
                pts.append(p)
        out[b] = np.asarray(pts) - np.mean(pts, axis=0)
    return torch.from_numpy(out)


def ase_energies_forces(energy, x: torch.Tensor, z: np.ndarray | None = None):
    """Energies (B,) and forces (B, n, 3) through ``energy.to_ase_calculator()``."""
    calc = energy.to_ase_calculator()
    es, fs = [], []
    for b in range(x.shape[0]):
        atoms = make_atoms(energy, x[b])
        if z is not None:
            atoms.positions[:, 2] = z[b]  # ignored by 2D energies
        atoms.calc = calc
        es.append(atoms.get_potential_energy())
        fs.append(atoms.get_forces())
    return np.array(es), np.array(fs)


def pad_to_3d(x: torch.Tensor, z: np.ndarray | None = None) -> torch.Tensor:
    """(B, n, d) -> (B, n, 3), z (and y) from ``z`` or zero."""
    out = torch.zeros(*x.shape[:2], 3, dtype=x.dtype)
    out[..., : x.shape[2]] = x
    if z is not None and x.shape[2] < 3:
        out[..., 2] = torch.from_numpy(z)
    return out


def three_way_check(energy, x: torch.Tensor, seed: int = 0) -> None:
    """torch (float64) vs ASE calculator vs OpenMM System (Reference platform, via
    OpenMMEnergy at the temperature of ``energy.kT``) on energies and forces."""
    n, d = energy.n_particles, energy.spatial_dim
    e_t, f_t = energy.energy_and_forces(x)  # (B,), (B, n, d)
    e_t, f_t = e_t.numpy(), f_t.numpy()
    # 2D energies must ignore z: give each engine a random z.
    z = np.random.default_rng(seed).normal(size=(x.shape[0], n)) if d < 3 else None

    e_a, f_a = ase_energies_forces(energy, x, z)
    assert_close(e_a, e_t, what="ASE energy")
    assert_close(f_a[..., :d], f_t, what="ASE forces")
    assert np.all(f_a[..., d:] == 0.0)

    omm = OpenMMEnergy(energy.to_openmm_system(), temperature_for_reduced_kT(energy.kT), platform="Reference")
    e_o, f_o = omm.energy_and_forces(pad_to_3d(x, z))  # kT, kT/nm
    assert_close(e_o.numpy(), e_t / energy.kT, what="OpenMM energy")
    assert_close(f_o[..., :d].numpy(), f_t / energy.kT, what="OpenMM forces")
    assert torch.all(f_o[..., d:] == 0.0)


# ------------------------------------------------------------- bridges out
@pytest.mark.parametrize(
    "energy, x",
    [
        (get_energy("lj13"), spaced_points(N_CONFIGS, 13, 3, box=3.0, min_dist=0.8, seed=1)),
        (LennardJonesCluster(13, kT=0.7, softening=0.0, pair_factor=1.0), spaced_points(N_CONFIGS, 13, 3, 3.0, 0.8, 2)),
        (LennardJonesCluster(6, spatial_dim=2, kT=1.5), spaced_points(N_CONFIGS, 6, 2, box=3.0, min_dist=0.8, seed=3)),
        (get_energy("dw4"), torch.from_numpy(np.random.default_rng(4).normal(scale=2.5, size=(N_CONFIGS, 4, 2)))),
        (MultiDoubleWell(5, spatial_dim=3, kT=2.0),
         torch.from_numpy(np.random.default_rng(5).normal(scale=2.5, size=(N_CONFIGS, 5, 3)))),
    ],
    ids=["lj13", "lj13-f1-kT0.7", "lj6-2d", "dw4", "dw5-3d"],
)
def test_torch_ase_openmm_agree_on_random_configurations(energy, x):
    three_way_check(energy, x)


@pytest.mark.parametrize("system_name, file, n, d", [("lj13", "test_split_LJ13.npy", 13, 3),
                                                    ("dw4", "test_split_DW4.npy", 4, 2)])
def test_torch_ase_openmm_agree_on_reference_samples(system_name, file, n, d):
    path = require_reference(file)
    x = torch.from_numpy(np.load(path).astype(np.float64)).reshape(-1, n, d)  # (10000, n, d)
    energy = get_energy(system_name)
    three_way_check(energy, x[::50])
    if system_name == "lj13":  # perturbed reference samples too
        three_way_check(energy, x[::100] + 0.03 * torch.randn(x[::100].shape, generator=torch.Generator().manual_seed(0),
                                                             dtype=torch.float64))


@pytest.mark.parametrize("system_name, file, n, d, mean_e", [("lj13", "test_split_LJ13.npy", 13, 3, -43.127),
                                                            ("dw4", "test_split_DW4.npy", 4, 2, -22.450)])
def test_openmm_mean_energy_of_reference_samples_matches_readme(system_name, file, n, d, mean_e):
    path = require_reference(file)
    x = pad_to_3d(torch.from_numpy(np.load(path).astype(np.float64)).reshape(-1, n, d))
    omm = OpenMMEnergy(get_energy(system_name).to_openmm_system(), temperature_for_reduced_kT(1.0), platform="Reference")
    assert abs(float(omm.energy(x).mean()) - mean_e) < 1e-3


def test_openmm_system_layout():
    lj = get_energy("lj13")
    system = lj.to_openmm_system()
    assert system.getNumParticles() == 13
    assert all(system.getParticleMass(i).value_in_unit(openmm.unit.dalton) == PARTICLE_MASS_AMU for i in range(13))
    assert [type(f).__name__ for f in system.getForces()] == ["CustomBondForce"]
    assert system.getForce(0).getNumBonds() == 13 * 12 // 2
    dw = get_energy("dw4").to_openmm_system()
    assert [type(f).__name__ for f in dw.getForces()] == ["CustomCompoundBondForce"]


def test_openmm_dw4_context_directly():
    """A plain Reference Context on the DW-4 System: energy in kJ/mol = reduced energy."""
    dw = get_energy("dw4")
    x = torch.tensor([[[0.0, 0.0], [4.0, 0.0], [0.0, 3.0], [3.5, 4.5]]], dtype=torch.float64)
    system = dw.to_openmm_system()
    context = openmm.Context(system, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(pad_to_3d(x)[0].numpy() + np.array([0.0, 0.0, 7.0]))
    state = context.getState(getEnergy=True, getForces=True)
    e, f = dw.energy_and_forces(x)
    assert_close(state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole), float(e))
    forces = state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
    assert_close(forces[:, :2], f[0].numpy())
    assert np.all(forces[:, 2] == 0.0)


def test_to_openmm_system_rejects_other_energies():
    with pytest.raises(NotImplementedError, match="GaussianMixture"):
        GaussianMixture.gmm40().to_openmm_system()


def test_ase_calculator_checks_atom_count_and_energy_type():
    calc = get_energy("lj13").to_ase_calculator()
    assert isinstance(calc, Calculator) and calc.implemented_properties == ["energy", "forces"]
    atoms = Atoms("X12", positions=np.arange(36.0).reshape(12, 3))
    atoms.calc = calc
    with pytest.raises(ValueError, match="13 atoms"):
        atoms.get_potential_energy()
    with pytest.raises(TypeError, match="energy"):
        EnergyCalculator("lj13")
    with pytest.raises(ValueError, match="positions"):
        make_atoms(get_energy("dw4"), np.zeros((4, 3)))


# -------------------------------------------------------------- bridges in
EPS_EV, RM_ANGSTROM, T_ASE = 0.0104, 3.82, 85.0  # argon-like LJ in eV / Angstrom
EPS_KJ, RM_NM, T_OMM = 0.996, 0.382, 100.0  # the same in kJ/mol / nm


@pytest.mark.parametrize("pair_factor", [1.0, 2.0])
def test_ase_energy_with_ase_lennard_jones_matches_native(pair_factor):
    """eps [(rm/r)^12 - 2 (rm/r)^6] = 4 eps [(s/r)^12 - (s/r)^6] with s = rm / 2^(1/6)."""
    kT_ev = BOLTZMANN_EV_PER_K * T_ASE
    native = LennardJonesCluster(13, epsilon=EPS_EV, r_m=RM_ANGSTROM, pair_factor=pair_factor,
                                 softening=0.0, oscillator_scale=0.0, kT=kT_ev)
    calc = LennardJones(epsilon=pair_factor * EPS_EV, sigma=RM_ANGSTROM / 2 ** (1 / 6), rc=1e3, smooth=False)
    target = ASEEnergy(Atoms("Ar13"), calc, temperature=T_ASE)
    assert target.kT == 1.0 and target.length_unit == "angstrom" and target.energy_unit == "kT"
    x = RM_ANGSTROM * spaced_points(N_CONFIGS, 13, 3, box=3.0, min_dist=0.8, seed=6)  # Angstrom
    e, f = target.energy_and_forces(x)
    e_n, f_n = native.energy_and_forces(x)  # eV, eV/Angstrom
    assert_close(e.numpy(), (e_n / kT_ev).numpy(), what="energy in kT")
    assert_close(f.numpy(), (f_n / kT_ev).numpy(), what="forces in kT/Angstrom")
    assert_close(target.energy(x).numpy(), (-native.log_prob(x)).numpy(), what="energy()")


def lj_nonbonded_system(n: int, pair_factor: float) -> "openmm.System":
    """LJ-n from OpenMM's standard NonbondedForce (no cutoff, zero charges)."""
    system = openmm.System()
    force = openmm.NonbondedForce()
    force.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    for _ in range(n):
        system.addParticle(39.948)
        force.addParticle(0.0, RM_NM / 2 ** (1 / 6), pair_factor * EPS_KJ)
    system.addForce(force)
    return system


@pytest.mark.parametrize("pair_factor", [1.0, 2.0])
def test_openmm_energy_with_nonbonded_force_matches_native(pair_factor):
    kT_kj = MOLAR_GAS_CONSTANT_KJ_PER_MOL_K * T_OMM
    native = LennardJonesCluster(13, epsilon=EPS_KJ, r_m=RM_NM, pair_factor=pair_factor,
                                 softening=0.0, oscillator_scale=0.0, kT=kT_kj)
    target = OpenMMEnergy(lj_nonbonded_system(13, pair_factor), temperature=T_OMM, platform="Reference")
    assert target.kT == 1.0 and target.length_unit == "nm" and target.spatial_dim == 3
    x = RM_NM * spaced_points(N_CONFIGS, 13, 3, box=3.0, min_dist=0.8, seed=7)  # nm
    e, f = target.energy_and_forces(x)
    e_n, f_n = native.energy_and_forces(x)  # kJ/mol, kJ/mol/nm
    assert_close(e.numpy(), (e_n / kT_kj).numpy(), what="energy in kT")
    assert_close(f.numpy(), (f_n / kT_kj).numpy(), what="forces in kT/nm")


def test_openmm_default_platform_and_cpu_agree_with_reference():
    system = get_energy("lj13").to_openmm_system()
    default = OpenMMEnergy(system, temperature=150.0)
    assert default.platform_name == ("CPU" if "CPU" in available_platforms() else "Reference")
    reference = OpenMMEnergy(system, temperature=150.0, platform="Reference")
    x = spaced_points(20, 13, 3, box=3.0, min_dist=0.8, seed=8)
    e_d, f_d = default.energy_and_forces(x)
    e_r, f_r = reference.energy_and_forces(x)
    assert_close(e_d.numpy(), e_r.numpy())
    assert_close(f_d.numpy(), f_r.numpy())


@pytest.mark.parametrize("make", ["ase", "openmm"])
def test_bridged_energy_keeps_dtype_shape_and_counts(make):
    if make == "ase":
        target = ASEEnergy(Atoms("Ar13"), LennardJones(sigma=3.4, epsilon=0.0104, rc=1e3), temperature=100.0)
        scale = RM_ANGSTROM
    else:
        target = OpenMMEnergy(lj_nonbonded_system(13, 1.0), temperature=100.0, platform="Reference")
        scale = RM_NM
    x64 = scale * spaced_points(3, 13, 3, box=3.0, min_dist=0.8, seed=9)
    x32 = x64.float().reshape(3, 39)
    e, f = target.energy_and_forces(x32)
    assert e.dtype == torch.float32 and f.dtype == torch.float32 and f.shape == (3, 39)
    assert e.device == x32.device
    assert_close(f.double().reshape(3, 13, 3).numpy(), target.energy_and_forces(x64)[1].numpy(), rtol=1e-3)
    assert target.energy(torch.zeros(0, 13, 3)).shape == (0,)
    assert target.n_evaluations == 6


def test_openmm_energy_survives_deepcopy_and_pickle():
    target = OpenMMEnergy(get_energy("lj13").to_openmm_system(), temperature=120.0, platform="Reference")
    x = spaced_points(4, 13, 3, box=3.0, min_dist=0.8, seed=10)
    e = target.energy(x)
    for clone in (copy.deepcopy(target), pickle.loads(pickle.dumps(target))):
        assert clone.platform_name == "Reference"
        assert torch.equal(clone.energy(x), e)


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize("temperature", [0.0, -10.0, math.nan, math.inf])
def test_non_positive_temperature_is_rejected(temperature):
    with pytest.raises(ValueError, match="temperature"):
        ASEEnergy(Atoms("Ar2"), LennardJones(), temperature=temperature)
    with pytest.raises(ValueError, match="temperature"):
        OpenMMEnergy(lj_nonbonded_system(2, 1.0), temperature=temperature)


def test_bad_constructor_arguments_are_rejected():
    with pytest.raises(TypeError, match="temperature"):
        ASEEnergy(Atoms("Ar2"), LennardJones(), temperature="300")
    with pytest.raises(TypeError, match="atoms"):
        ASEEnergy(np.zeros((2, 3)), LennardJones(), temperature=300.0)
    with pytest.raises(TypeError, match="calculator"):
        ASEEnergy(Atoms("Ar2"), object(), temperature=300.0)
    with pytest.raises(TypeError, match="system"):
        OpenMMEnergy("system.xml", temperature=300.0)
    with pytest.raises(ValueError, match="Reference"):  # the message lists the available platforms
        OpenMMEnergy(lj_nonbonded_system(2, 1.0), temperature=300.0, platform="NoSuchPlatform")


@pytest.mark.parametrize("make", ["ase", "openmm"])
@pytest.mark.parametrize("shape", [(2, 12, 3), (2, 13, 2), (39,), (2, 40)])
def test_wrong_shapes_are_rejected(make, shape):
    if make == "ase":
        target = ASEEnergy(Atoms("Ar13"), LennardJones(), temperature=100.0)
    else:
        target = OpenMMEnergy(lj_nonbonded_system(13, 1.0), temperature=100.0, platform="Reference")
    with pytest.raises(ValueError, match="shape"):
        target.energy(torch.zeros(shape))
    with pytest.raises(ValueError, match="shape"):
        target.energy_and_forces(torch.zeros(shape))


class FailingCalculator(Calculator):
    """Raises when the first atom is beyond x = 5 Angstrom."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.atoms.positions[0, 0] > 5.0:
            raise RuntimeError("SCF did not converge")
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


def test_failing_calculator_reports_configuration_index():
    target = ASEEnergy(Atoms("Ar3"), FailingCalculator(), temperature=300.0)
    x = torch.zeros(4, 3, 3)
    x[2, 0, 0] = 6.0
    for method in (target.energy, target.energy_and_forces):
        with pytest.raises(EnergyEvaluationError, match="configuration 2") as info:
            method(x)
        assert "SCF did not converge" in str(info.value)
        assert isinstance(info.value.__cause__, RuntimeError)
    assert torch.equal(target.energy(x[:2]), torch.zeros(2))


def test_failing_openmm_evaluation_reports_configuration_index(monkeypatch):
    target = OpenMMEnergy(lj_nonbonded_system(3, 1.0), temperature=300.0, platform="Reference")
    context = target._get_context()
    calls = {"n": 0}

    def set_positions(positions):
        calls["n"] += 1
        if calls["n"] == 2:
            raise openmm.OpenMMException("positions rejected")
        return openmm.Context.setPositions(context, positions)

    monkeypatch.setattr(context, "setPositions", set_positions)
    with pytest.raises(EnergyEvaluationError, match="configuration 1") as info:
        target.energy_and_forces(torch.rand(3, 3, 3, dtype=torch.float64))
    assert isinstance(info.value.__cause__, openmm.OpenMMException)


def test_openmm_energy_accepts_temperature_quantity():
    system = lj_nonbonded_system(2, 1.0)
    target = OpenMMEnergy(system, temperature=100.0 * openmm.unit.kelvin, platform="Reference")
    assert target.temperature == 100.0
    assert target.kT_kj_per_mol == pytest.approx(MOLAR_GAS_CONSTANT_KJ_PER_MOL_K * 100.0)


# ------------------------------------------------ hooks, not isinstance
def test_bridges_import_no_concrete_energy_and_base_imports_no_bridge():
    import subprocess
    import sys

    code = ("import sys, idem_md.energies.base; assert 'idem_md.bridges.openmm' not in sys.modules "
            "and 'idem_md.bridges.ase' not in sys.modules and 'openmm' not in sys.modules; "
            "import idem_md.bridges.openmm, idem_md.bridges.ase, idem_md.energies.openmm_bridge as old; "
            "assert old.OpenMMEnergy is idem_md.bridges.openmm.OpenMMEnergy")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    src = (Path(__file__).resolve().parents[1] / "idem_md" / "bridges" / "openmm.py").read_text()
    assert "LennardJonesCluster" not in src and "MultiDoubleWell" not in src and "isinstance(energy, L" not in src


@pytest.mark.filterwarnings("ignore:steps=8 reverse-SDE steps")
def test_user_pair_potential_trains_exports_and_runs_md():
    """A pair potential written as in a user's script (no library edit) gets training, OpenMM, ASE and MD."""
    from idem_md import IDEMSampler
    from idem_md.energies import Energy, PairPotential
    from idem_md.md import MDConfig, run_md

    class SpringCluster(Energy):
        """E = sum_{i<j} k (|x_i - x_j| - r0)^2, in reduced units."""

        translation_invariant = True

        def __init__(self, n=4, k=2.0, r0=1.2):
            super().__init__(n, 3, kT=1.0, name="springs")
            self.k, self.r0 = k, r0

        def _energy(self, x):
            i, j = torch.triu_indices(self.n_particles, self.n_particles, 1)
            r = (x[:, i] - x[:, j]).pow(2).sum(-1).add(1e-12).sqrt()
            return (self.k * (r - self.r0) ** 2).sum(-1)

        def openmm_pair_potential(self):
            return PairPotential("k*(sqrt(r2) - r0)^2", {"k": self.k, "r0": self.r0}, "user springs")

    energy = SpringCluster()
    tiny = dict(batch_size=8, num_mc_samples=16, inner_steps=2, samples_per_outer=8, sde_steps=8, buffer_size=32,
                outer_iterations=2, sample_batch_size=8,
                network_options=dict(hidden_irreps="8x0e + 2x1o", n_layers=1, n_radial_basis=4, radial_hidden=8,
                                     time_embedding_dim=8))
    sampler = IDEMSampler(energy, config=tiny, device="cpu")
    assert sampler.mean_free  # the hook, not the particle count, decides
    sampler.fit(progress=False)
    samples = sampler.sample(6, progress=False)
    x = torch.as_tensor(samples.positions, dtype=torch.float64).reshape(6, 4, 3)
    assert torch.isfinite(x).all()
    x = x + 0.3 * torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    e = energy.energy(x)
    # OpenMM: the System built from the hook has the same energies (kJ/mol == reduced) and forces.
    omm = OpenMMEnergy(energy.to_openmm_system(), temperature=temperature_for_reduced_kT(1.0), platform="Reference")
    torch.testing.assert_close(omm.energy(x) * omm.kT_kj_per_mol, e, rtol=1e-9, atol=1e-9)
    # ASE: the generic calculator (eV == reduced energy).
    for b in range(3):
        atoms = energy.to_ase_atoms(x[b])
        atoms.calc = energy.to_ase_calculator()
        assert atoms.get_potential_energy() == pytest.approx(float(e[b]), rel=1e-12)
    # MD: OpenMM through the hook, and the torch BAOAB engine, agree with energy() of their samples.
    assert energy.default_md_engine == "openmm"
    for engine in ("openmm", "torch"):
        run = run_md(energy, 20, MDConfig(n_equilibration_steps=200, thinning=20, engine=engine), progress=False)
        assert run.metadata["engine"] == engine
        torch.testing.assert_close(run.energies, energy.energy(run.positions.double()), rtol=1e-5, atol=1e-5)


def test_energy_without_openmm_form_says_which_hook_to_override():
    with pytest.raises(NotImplementedError, match="openmm_pair_potential"):
        get_energy("gmm40").to_openmm_system()
    assert get_energy("gmm40").default_md_engine == "torch"


def _lj_pdb_like_system():
    system = openmm.System()
    nb = openmm.NonbondedForce()
    for _ in range(3):
        system.addParticle(39.9)
        nb.addParticle(0.0, 0.34, 0.99)
    system.addForce(nb)
    return system, nb


def test_openmm_energy_refuses_constraints_periodic_boxes_virtual_sites_and_massless_particles():
    system, _ = _lj_pdb_like_system()
    assert OpenMMEnergy(system, 120.0, platform="Reference").translation_invariant
    constrained, _ = _lj_pdb_like_system()
    constrained.addConstraint(0, 1, 0.38)
    with pytest.raises(ValueError, match="1 constraints"):
        OpenMMEnergy(constrained, 120.0)
    periodic, nb = _lj_pdb_like_system()
    nb.setNonbondedMethod(openmm.NonbondedForce.PME)
    with pytest.raises(ValueError, match="periodic boundary conditions.*NonbondedForce"):
        OpenMMEnergy(periodic, 120.0)
    virtual, _ = _lj_pdb_like_system()
    virtual.setParticleMass(2, 0.0)
    virtual.setVirtualSite(2, openmm.TwoParticleAverageSite(0, 1, 0.5, 0.5))
    with pytest.raises(ValueError, match="1 virtual sites"):
        OpenMMEnergy(virtual, 120.0)
    massless, _ = _lj_pdb_like_system()
    massless.setParticleMass(1, 0.0)
    with pytest.raises(ValueError, match="zero mass"):
        OpenMMEnergy(massless, 120.0)
    external, _ = _lj_pdb_like_system()
    external.addForce(openmm.CustomExternalForce("x^2"))
    assert not OpenMMEnergy(external, 120.0).translation_invariant  # an external field


def test_public_validate_and_home_device_for_other_modules():
    lj = get_energy("lj13")
    assert lj.validate(torch.zeros(2, 39)).shape == (2, 13, 3)
    assert lj.home_device() == torch.device("cpu")
    with pytest.raises(ValueError, match=r"positions must have shape \(B, 39\) or \(B, 13, 3\)"):
        lj.validate(torch.zeros(2, 12), "positions")
