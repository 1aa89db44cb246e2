"""ForceFieldEnergy (batched torch force field) against OpenMM, and what it refuses."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")

from idem_md.energies.alanine import PHI_ATOMS, AlanineDipeptide, alanine_dipeptide_system  # noqa: E402
from idem_md.energies.forcefield import ForceFieldEnergy, check_supported, dihedral  # noqa: E402
from idem_md.energies.openmm_bridge import OpenMMEnergy  # noqa: E402

RTOL = 1e-5


BACKENDS = ["torch"] + (["numba"] if importlib.util.find_spec("numba") else [])


@pytest.fixture(scope="module", params=BACKENDS)
def aldp(request):
    return AlanineDipeptide(temperature=300.0, backend=request.param)


@pytest.fixture(scope="module")
def reference():
    return OpenMMEnergy(alanine_dipeptide_system(), temperature=300.0, platform="Reference")


def _assert_matches(ff, ref, x):
    e1, f1 = ff.energy_and_forces(x)
    e2, f2 = ref.energy_and_forces(x)
    assert torch.allclose(e1, e2, rtol=RTOL, atol=0.0), (e1 - e2).abs().max()
    # forces: relative to each configuration's largest force component
    scale = f2.flatten(1).abs().amax(1)[:, None, None]
    assert ((f1 - f2).abs() / scale).max() < RTOL


def _md_positions(n_frames: int = 6, steps_between: int = 50) -> torch.Tensor:
    """Frames of a short OpenMM Langevin run at 300 K (0.5 fs steps, no constraints)."""
    from openmm import unit

    aldp = AlanineDipeptide()
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1.0 / unit.picosecond, 0.0005 * unit.picosecond)
    integrator.setRandomNumberSeed(1)
    context = openmm.Context(alanine_dipeptide_system(), integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(aldp.initial_positions()[0].numpy())
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    frames = []
    for _ in range(n_frames):
        integrator.step(steps_between)
        frames.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    return torch.as_tensor(np.stack(frames))


def test_random_configurations_match_openmm(aldp, reference):
    g = torch.Generator().manual_seed(0)
    x0 = aldp.initial_positions()
    for noise in (0.005, 0.02, 0.05):  # nm: from thermal jitter to strongly distorted
        x = x0 + noise * torch.randn(6, 22, 3, generator=g, dtype=torch.float64)
        _assert_matches(aldp, reference, x)


def test_md_configurations_match_openmm(aldp, reference):
    _assert_matches(aldp, reference, _md_positions())


def test_units_are_kT_at_the_given_temperature(aldp):
    hot = AlanineDipeptide(temperature=600.0)
    x = aldp.initial_positions()
    assert torch.allclose(aldp.energy(x), 2.0 * hot.energy(x), rtol=1e-12)
    assert aldp.energy_unit == "kT" and aldp.length_unit == "nm"


def test_float32_batches_and_flat_shape(aldp):
    x = (aldp.initial_positions() + 0.01 * torch.randn(3, 22, 3, dtype=torch.float64))
    e64, f64 = aldp.energy_and_forces(x)
    e32, f32 = aldp.energy_and_forces(x.float().reshape(3, 66))
    assert e32.dtype == torch.float32 and f32.shape == (3, 66)
    assert torch.allclose(e32.double(), e64, rtol=1e-5)


def test_each_force_class_alone_matches_openmm():
    """A tiny 4-atom molecule with one of each term, including a torsion with a phase
    (dihedral sign) and a NonbondedForce exception, checked term by term."""
    def build(kind):
        s = openmm.System()
        for m in (12.0, 1.0, 16.0, 14.0):
            s.addParticle(m)
        if kind == "bond":
            f = openmm.HarmonicBondForce(); f.addBond(0, 1, 0.11, 3e5); f.addBond(2, 3, 0.13, 2e5)
        elif kind == "angle":
            f = openmm.HarmonicAngleForce(); f.addAngle(0, 1, 2, 1.9, 400.0)
        elif kind == "torsion":
            f = openmm.PeriodicTorsionForce(); f.addTorsion(0, 1, 2, 3, 3, 0.7, 2.5); f.addTorsion(0, 1, 2, 3, 1, 2.0, 1.0)
        else:
            f = openmm.NonbondedForce(); f.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
            for q, sg, ep in ((0.4, 0.3, 0.5), (-0.2, 0.25, 0.1), (-0.5, 0.3, 0.8), (0.3, 0.32, 0.6)):
                f.addParticle(q, sg, ep)
            f.addException(0, 1, 0.0, 1.0, 0.0)  # exclusion
            f.addException(0, 2, -0.1, 0.29, 0.3)  # scaled 1-4 style pair
        s.addForce(f)
        return s

    x = torch.tensor([[0.0, 0.0, 0.0], [0.12, 0.01, 0.0], [0.2, 0.11, 0.03], [0.33, 0.12, -0.09]], dtype=torch.float64)
    x = x[None] + 0.02 * torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for kind in ("bond", "angle", "torsion", "nonbonded"):
        system = build(kind)
        reference = OpenMMEnergy(system, 300.0, platform="Reference")
        for backend in BACKENDS:
            _assert_matches(ForceFieldEnergy(system, 300.0, backend=backend), reference, x)


def test_dihedral_sign_follows_iupac():
    # cis is 0; turning the last atom by +90 degrees about b2 (right-handed) gives +pi/2
    x = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]], dtype=torch.float64)
    assert abs(float(dihedral(x, torch.tensor([[0, 1, 2, 3]]))) - 0.0) < 1e-12
    x[0, 3] = torch.tensor([-1.0, 1.0, 1.0])
    assert float(dihedral(x, torch.tensor([[0, 1, 2, 3]]))) == pytest.approx(np.pi / 2)


def test_refuses_unsupported_forces_constraints_and_periodic_boxes():
    s = alanine_dipeptide_system()
    s.addForce(openmm.CustomExternalForce("x^2"))
    s.addForce(openmm.MonteCarloBarostat(1.0, 300.0))
    s.addConstraint(0, 1, 0.1)
    with pytest.raises(ValueError, match=r"unsupported forces CustomExternalForce, MonteCarloBarostat.*1 constraints") as err:
        ForceFieldEnergy(s, 300.0)
    assert "\n" not in str(err.value)
    p = alanine_dipeptide_system()
    nb = next(f for f in p.getForces() if isinstance(f, openmm.NonbondedForce))
    nb.setNonbondedMethod(openmm.NonbondedForce.PME)
    with pytest.raises(ValueError, match="periodic boundary conditions.*NoCutoff only"):
        check_supported(p)


def test_particle_types_and_phi_indices(aldp):
    types = aldp.particle_types()
    assert len(types) == 22 and types[0] == 0
    # the three methyl hydrogens of each cap share a type; carbonyl O of ACE and ALA have different charges
    assert types[0] == types[2] == types[3] and types[19] == types[20] == types[21]
    assert len(set(types)) < 22
    names = [a.name for a in aldp.topology.atoms()]
    assert [names[i] for i in PHI_ATOMS] == ["C", "N", "CA", "C"]
