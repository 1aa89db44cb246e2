"""idem-md with a serialised OpenMM System: train -> sample (.dcd) -> md -> evaluate, and the one-line refusals."""

from __future__ import annotations

import json

import pytest

openmm = pytest.importorskip("openmm")
from openmm import app, unit  # noqa: E402

from idem_md.cli import main  # noqa: E402
from idem_md.targets import load_run_target, resolve_target  # noqa: E402

TINY = ["--set", "batch_size=8", "--set", "num_mc_samples=16", "--set", "inner_steps=2", "--set",
        "samples_per_outer=8", "--set", "sde_steps=10", "--set", "buffer_size=64", "--set",
        'network_options={"hidden_irreps": "8x0e + 2x1o", "n_layers": 1, "radial_max": 1.0}']
BONDS = ((0, 1), (1, 2), (2, 3))


def _molecule(tmp_path, extra_force=None):
    """A 4-atom chain (bonds, angles, a torsion, charges and LJ with 1-4 exceptions), written as
    ``mol.xml`` and ``mol.pdb``."""
    s = openmm.System()
    for m in (12.0, 12.0, 16.0, 14.0):
        s.addParticle(m)
    b = openmm.HarmonicBondForce()
    for i, j in BONDS:
        b.addBond(i, j, 0.15, 1.0e4)
    a = openmm.HarmonicAngleForce()
    a.addAngle(0, 1, 2, 1.9, 200.0)
    a.addAngle(1, 2, 3, 1.9, 200.0)
    t = openmm.PeriodicTorsionForce()
    t.addTorsion(0, 1, 2, 3, 3, 0.0, 2.0)
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    for q in (0.2, -0.2, 0.3, -0.3):
        nb.addParticle(q, 0.3, 0.4)
    nb.createExceptionsFromBonds(list(BONDS), 0.8333, 0.5)
    for f in (b, a, t, nb) + ((extra_force,) if extra_force is not None else ()):
        s.addForce(f)
    (tmp_path / "mol.xml").write_text(openmm.XmlSerializer.serialize(s))
    top = app.Topology()
    res = top.addResidue("MOL", top.addChain())
    atoms = [top.addAtom(n, app.Element.getBySymbol(e), res) for n, e in (("C1", "C"), ("C2", "C"), ("O1", "O"),
                                                                        ("N1", "N"))]
    for i, j in BONDS:
        top.addBond(atoms[i], atoms[j])
    pos = [(0, 0, 0), (0.15, 0, 0), (0.2, 0.14, 0), (0.35, 0.15, 0.05)]
    with open(tmp_path / "mol.pdb", "w") as fh:
        app.PDBFile.writeFile(top, [openmm.Vec3(*p) for p in pos] * unit.nanometer, fh)
    return str(tmp_path / "mol.xml"), str(tmp_path / "mol.pdb")


def test_train_sample_md_evaluate_an_openmm_system(tmp_path, capsys):
    import mdtraj as md

    xml, pdb = _molecule(tmp_path)
    run = tmp_path / "RUN"
    target = ["--system", xml, "--topology", pdb, "--temperature", "300"]
    assert main(["train", *target, "--out", str(run), "--outer-iterations", "1", "--quiet", *TINY]) == 0
    spec = json.loads((run / "system.json").read_text())
    assert spec["temperature"] == 300.0 and (run / "system.xml").is_file() and (run / "topology.pdb").is_file()
    assert json.loads((run / "config.json").read_text())["config"]["network_options"]["particle_types"] == [0, 1, 2, 3]
    remembered = load_run_target(run)
    assert remembered.energy.name == "mol" and remembered.energy.temperature == 300.0

    # sample needs no --system: the run remembers it; the .pdb beside the .dcd names the real atoms
    assert main(["sample", str(run), "-n", "20", "--steps", "10", "--out", str(tmp_path / "s.dcd"), "--quiet"]) == 0
    traj = md.load(str(tmp_path / "s.dcd"), top=str(tmp_path / "s.pdb"))
    assert traj.n_frames == 20 and [a.name for a in traj.topology.atoms] == ["C1", "C2", "O1", "N1"]
    assert [a.element.symbol for a in traj.topology.atoms] == ["C", "C", "O", "N"]

    assert main(["md", *target, "-n", "20", "--timestep", "0.001", "--out", str(tmp_path / "md.dcd"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "s.dcd"), *target, "--reference", str(tmp_path / "md.dcd"),
                 "--batches", "2", "--batch-size", "10"]) == 0
    table = capsys.readouterr().out
    assert "reference_energy_mean" in table and "energy_w2" in table


@pytest.mark.parametrize("argv, message", [
    (["--kT", "1.0"], "--kT is for reduced-unit systems"),
    ([], "--temperature (kelvin) is required"),
    (["--temperature", "300", "--kT", "1"], "either --temperature"),
])
def test_system_file_refusals_are_one_line(tmp_path, capsys, argv, message):
    xml, _ = _molecule(tmp_path)
    assert main(["md", "--system", xml, *argv, "-n", "5", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_reduced_and_physical_temperatures(tmp_path, capsys):
    assert resolve_target("lj13", kT=0.5).energy.kT == 0.5
    assert resolve_target("aldp", temperature=350.0).energy.temperature == 350.0
    assert main(["md", "--system", "lj13", "--temperature", "300", "-n", "5", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--temperature does not apply to 'lj13'; give --kT" in capsys.readouterr().err
    from idem_md.energies.alanine import alanine_dipeptide_system

    _, pdb = _molecule(tmp_path)
    (tmp_path / "aldp.xml").write_text(openmm.XmlSerializer.serialize(alanine_dipeptide_system()))
    with pytest.raises(ValueError, match="--topology .* has 4 atoms, the system has 22"):
        resolve_target(str(tmp_path / "aldp.xml"), topology=pdb, temperature=300.0)


def test_non_standard_forces_fall_back_to_one_context_energy(tmp_path):
    from idem_md.energies.forcefield import ForceFieldEnergy
    from idem_md.energies.openmm_bridge import OpenMMEnergy

    xml, _ = _molecule(tmp_path)
    assert type(resolve_target(xml, temperature=300.0).energy) is ForceFieldEnergy
    extra = openmm.CustomExternalForce("0.1*x^2")
    for i in range(4):
        extra.addParticle(i, [])
    xml2, _ = _molecule(tmp_path, extra)
    energy = resolve_target(xml2, temperature=300.0).energy
    assert isinstance(energy, OpenMMEnergy)


def test_the_topology_pdb_positions_start_md_of_a_system_file(tmp_path):
    """A bonded molecule must not start MD from a random placement: --topology's positions are the start."""
    import numpy as np

    xml, pdb = _molecule(tmp_path)
    with_pdb = resolve_target(xml, topology=pdb, temperature=300.0).energy
    pos = np.array([(0, 0, 0), (0.15, 0, 0), (0.2, 0.14, 0), (0.35, 0.15, 0.05)])
    np.testing.assert_allclose(with_pdb.initial_configuration().numpy(), pos - pos.mean(0), atol=1e-6)
    without = resolve_target(xml, temperature=300.0).energy
    assert not np.allclose(without.initial_configuration().numpy(), pos - pos.mean(0), atol=1e-3)
    with pytest.raises(ValueError, match="positions must be finite with shape"):
        type(with_pdb)(openmm.XmlSerializer.deserialize(open(xml).read()), 300.0, positions=np.zeros((3, 3)))
