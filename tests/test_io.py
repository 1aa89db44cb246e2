"""Tests for idem_md.samples (idem_md.io): Samples and its .npz / .xyz / .dcd round trips and length units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from idem_md import get_energy
from idem_md.io import SUPPORTED_SUFFIXES, Samples
from idem_md.units import ANGSTROM_PER_NM, NM_PER_ANGSTROM, REDUCED_LENGTH_IN_FILES_ANGSTROM

from conftest import require_reference

FORMATS = [".npz", ".xyz", ".dcd"]


def _make(system: str, n: int = 6, seed: int = 0) -> Samples:
    energy = get_energy(system)
    g = torch.Generator().manual_seed(seed)
    x = 1.5 * torch.randn(n, energy.dim, generator=g)
    meta = {"source": "idem", "energy_evaluations": 12345, "note": 'quoted "text", a=b', "nested": {"k": [1, 2.5]}}
    return Samples.from_array(x, energy.n_particles, energy.spatial_dim, energy=energy, centre=True, metadata=meta)


@pytest.fixture(params=["lj13", "dw4"])
def samples(request) -> Samples:
    return _make(request.param)


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# ----------------------------------------------------------------- the dataclass
def test_from_array_reshapes_particle_major_and_centres():
    x = np.arange(24, dtype=np.float64).reshape(3, 8)
    s = Samples.from_array(x, 4, 2)
    assert s.positions.shape == (3, 4, 2) and s.positions.dtype == torch.float64
    assert s.positions[1, 2].tolist() == [12.0, 13.0]  # row.reshape(n, d)
    assert torch.equal(s.flat(), torch.as_tensor(x))
    c = Samples.from_array(x, 4, 2, centre=True)
    assert torch.allclose(c.positions.mean(1), torch.zeros(3, 2, dtype=torch.float64))
    assert len(c) == 3 and c.energies is None and c.metadata == {}


def test_from_array_computes_energies_and_metadata():
    lj = get_energy("lj13")
    x = torch.randn(5, 13, 3, generator=torch.Generator().manual_seed(1))
    s = Samples.from_array(x, 13, 3, energy=lj)
    assert torch.allclose(s.energies, lj.energy(x))
    assert s.metadata["system"] == "lj13" and s.metadata["kT"] == 1.0
    with pytest.raises(ValueError, match="n_particles"):
        Samples.from_array(torch.randn(5, 8), 4, 2, energy=lj)
    with pytest.raises(ValueError, match=r"\(N, 39\) or \(N, 13, 3\)"):
        Samples.from_array(torch.randn(5, 40), 13, 3)


def test_from_array_reference_dw4_energies():
    data = np.load(require_reference("test_split_DW4.npy"))[:2000]
    s = Samples.from_array(data, 4, 2, energy=get_energy("dw4"), centre=True, metadata={"source": "reference"})
    assert s.positions.dtype == torch.float32
    assert abs(float(s.energies.double().mean()) - (-22.45)) < 0.25  # README: mean -22.450, std 1.9


def test_samples_validation_errors():
    with pytest.raises(ValueError, match="positions must have shape"):
        Samples(torch.zeros(5, 8))
    with pytest.raises(TypeError, match="floating point"):
        Samples(torch.zeros(5, 4, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        Samples(np.zeros((5, 4, 2)))
    with pytest.raises(ValueError, match="positions contains NaN"):
        Samples(torch.full((2, 4, 2), float("nan")))
    with pytest.raises(ValueError, match=r"energies must have shape \(5,\)"):
        Samples(torch.zeros(5, 4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="energies contains NaN"):
        Samples(torch.zeros(2, 4, 2), torch.tensor([0.0, float("inf")]))
    with pytest.raises(TypeError, match="metadata must hold plain JSON"):
        Samples(torch.zeros(2, 4, 2), metadata={"obj": object()})
    with pytest.raises(TypeError, match="metadata keys must be str"):
        Samples(torch.zeros(2, 4, 2), metadata={1: "a"})


def test_metadata_is_normalised_copy():
    meta = {"t": (1, 2), "x": np.float64(0.5), "n": np.int64(3), "e": torch.tensor(2.0)}
    s = Samples(torch.zeros(2, 4, 2), metadata=meta)
    assert s.metadata == {"t": [1, 2], "x": 0.5, "n": 3, "e": 2.0}
    meta["t"] = None
    assert s.metadata["t"] == [1, 2]


def test_subset_to_len():
    s = _make("dw4", n=10)
    sub = s.subset([0, 3, 5])
    assert len(sub) == 3 and torch.equal(sub.positions[1], s.positions[3]) and torch.equal(sub.energies[2], s.energies[5])
    assert len(s.subset(slice(2, 6))) == 4
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 2]] = True
    assert torch.equal(s.subset(mask).positions, s.positions[[1, 2]])
    assert len(s.subset(4)) == 1 and len(s.subset([])) == 0
    with pytest.raises(TypeError, match="integers or booleans"):
        s.subset([0.5])
    moved = s.to("cpu")
    assert moved is not s and torch.equal(moved.positions, s.positions) and moved.metadata == s.metadata


def test_to_mdtraj_topology_and_padding():
    s = _make("dw4", n=3)
    t = s.to_mdtraj()
    assert (t.n_frames, t.n_atoms, t.n_residues) == (3, 4, 4)
    assert {r.name for r in t.topology.residues} == {"DW"}
    assert {a.element.symbol for a in t.topology.atoms} == {"Ar"}
    nm = REDUCED_LENGTH_IN_FILES_ANGSTROM * NM_PER_ANGSTROM  # one reduced unit is 1 A = 0.1 nm in mdtraj
    np.testing.assert_allclose(t.xyz[..., :2], s.positions.numpy() * nm, atol=1e-7)
    assert np.all(t.xyz[..., 2] == 0)
    assert {r.name for r in _make("lj13", n=1).to_mdtraj().topology.residues} == {"LJ"}


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip(samples: Samples, suffix: str, tmp_path: Path):
    path = tmp_path / f"samples{suffix}"
    written = samples.save(path)
    assert all(p.exists() for p in written)
    assert not [n for n in _listing(tmp_path) if ".tmp" in n]  # no temporaries left
    back = Samples.load(path, n_particles=samples.n_particles, spatial_dim=samples.spatial_dim)
    assert back.positions.shape == samples.positions.shape
    assert back.positions.dtype == samples.positions.dtype
    np.testing.assert_allclose(back.positions.numpy(), samples.positions.numpy(), rtol=1e-6, atol=1e-6)
    assert back.energies is not None and back.energies.dtype == samples.energies.dtype
    np.testing.assert_array_equal(back.energies.numpy(), samples.energies.numpy())
    assert back.metadata == samples.metadata


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_without_energies_float64(suffix: str, tmp_path: Path):
    x = torch.randn(4, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    s = Samples(x, None, {"system": "dw4"})
    s.save(tmp_path / f"s{suffix}")
    back = Samples.load(tmp_path / f"s{suffix}")
    assert back.energies is None and back.metadata == {"system": "dw4"} and back.positions.dtype == torch.float64
    tol = 0 if suffix == ".npz" else 1e-6  # npz is lossless; dcd holds float32
    np.testing.assert_allclose(back.positions.numpy(), x.numpy(), atol=tol, rtol=tol)


def test_npz_round_trip_empty_set(tmp_path: Path):
    s = Samples(torch.zeros(0, 13, 3), torch.zeros(0), {"system": "lj13"})
    s.save(tmp_path / "e.npz")
    back = Samples.load(tmp_path / "e.npz")
    assert len(back) == 0 and back.n_particles == 13
    with pytest.raises(ValueError, match="0 samples"):
        s.save(tmp_path / "e.xyz")


def test_dcd_readable_by_mdtraj_one_reduced_unit_one_angstrom(tmp_path: Path):
    import mdtraj as md

    s = _make("lj13", n=7)
    s.save(tmp_path / "traj.dcd")
    assert _listing(tmp_path) == ["traj.dcd", "traj.json", "traj.pdb"]
    t = md.load(str(tmp_path / "traj.dcd"), top=str(tmp_path / "traj.pdb"))
    assert (t.n_frames, t.n_atoms) == (7, 13)
    np.testing.assert_allclose(t.xyz * ANGSTROM_PER_NM, s.positions.numpy() * REDUCED_LENGTH_IN_FILES_ANGSTROM,
                               atol=1e-5)  # the Angstrom in the file are the reduced coordinates
    pdb_top = md.load(str(tmp_path / "traj.pdb"))
    assert pdb_top.n_atoms == 13 and pdb_top.topology.atom(0).element.symbol == "Ar"


def test_xyz_readable_by_ase_in_angstrom(tmp_path: Path):
    import ase.io

    s = _make("dw4", n=3)
    s.save(tmp_path / "t.xyz")
    frames = ase.io.read(str(tmp_path / "t.xyz"), index=":")
    assert len(frames) == 3 and len(frames[0]) == 4
    np.testing.assert_allclose(frames[1].positions[:, :2], s.positions[1].numpy() * REDUCED_LENGTH_IN_FILES_ANGSTROM,
                               atol=1e-6)
    assert frames[0].get_potential_energy() == pytest.approx(float(s.energies[0]))
    assert frames[0].info["system"] == "dw4"  # readable copy of a simple metadata entry


def test_foreign_xyz_and_dcd_without_sidecar(tmp_path: Path):
    import ase.io
    from ase import Atoms

    pos = np.zeros((2, 3, 3))
    pos[:, :, :2] = np.random.default_rng(0).normal(size=(2, 3, 2))
    ase.io.write(str(tmp_path / "f.xyz"), [Atoms("H3", positions=p) for p in pos], format="extxyz")
    s3 = Samples.load(tmp_path / "f.xyz")
    assert s3.positions.shape == (2, 3, 3) and s3.energies is None and s3.metadata == {}
    s2 = Samples.load(tmp_path / "f.xyz", spatial_dim=2)
    np.testing.assert_allclose(s2.positions.numpy(), pos[:, :, :2], atol=1e-7)
    s = _make("lj13", n=2)
    s.save(tmp_path / "d.dcd")
    (tmp_path / "d.json").unlink()
    back = Samples.load(tmp_path / "d.dcd")
    assert back.energies is None and back.positions.shape == (2, 13, 3)
    with pytest.raises(ValueError, match="not all zero"):
        Samples.load(tmp_path / "d.dcd", spatial_dim=2)


# ------------------------------------------------------------- writer safety
@pytest.mark.parametrize("suffix", FORMATS)
def test_overwrite_refused_then_allowed(suffix: str, tmp_path: Path):
    s, other = _make("dw4", n=3, seed=0), _make("dw4", n=5, seed=1)
    path = tmp_path / f"s{suffix}"
    s.save(path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match=str(path.name)):
        other.save(path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    other.save(path, overwrite=True)
    assert len(Samples.load(path)) == 5


def test_dcd_overwrite_checks_every_file(tmp_path: Path):
    (tmp_path / "s.pdb").write_text("someone else's topology\n")
    with pytest.raises(FileExistsError, match=r"s\.pdb"):
        _make("dw4", n=2).save(tmp_path / "s.dcd")
    assert _listing(tmp_path) == ["s.pdb"]
    (tmp_path / "s.pdb").unlink()
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"s\.json"):
        _make("dw4", n=2).save(tmp_path / "s.dcd")
    assert _listing(tmp_path) == ["s.json"]


def _boom_after_writing(target_arg: int = 0):
    """A writer that puts some bytes into its output file, then fails."""

    def boom(*args, **kwargs):
        target = args[target_arg]
        if hasattr(target, "write"):
            target.write(b"partial")
        else:
            Path(target).write_bytes(b"partial")
        raise RuntimeError("disk full (simulated)")

    return boom


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_leaves_no_partial_file(suffix: str, existing: bool, tmp_path: Path, monkeypatch):
    import ase.io
    import mdtraj

    s = _make("lj13", n=3)
    path = tmp_path / f"s{suffix}"
    if existing:
        s.save(path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    if suffix == ".npz":
        monkeypatch.setattr(np, "savez", _boom_after_writing())
    elif suffix == ".xyz":
        monkeypatch.setattr(ase.io, "write", _boom_after_writing())
    else:  # the DCD is written first and succeeds; the PDB then fails
        monkeypatch.setattr(mdtraj.Trajectory, "save_pdb", _boom_after_writing(target_arg=1))
    with pytest.raises(RuntimeError, match="simulated"):
        _make("lj13", n=4, seed=2).save(path, overwrite=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# --------------------------------------------------------------- read errors
@pytest.mark.parametrize("suffix", FORMATS)
def test_missing_file(suffix: str, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=f"nothere{suffix}"):
        Samples.load(tmp_path / f"nothere{suffix}")


def test_dcd_needs_pdb(tmp_path: Path):
    _make("dw4", n=2).save(tmp_path / "s.dcd")
    (tmp_path / "s.pdb").unlink()
    with pytest.raises(FileNotFoundError, match=r"s\.pdb"):
        Samples.load(tmp_path / "s.dcd")


@pytest.mark.parametrize("name", ["s.pdb", "s.txt", "s"])
def test_unknown_suffix(name: str, tmp_path: Path):
    for call in (lambda: _make("dw4", n=2).save(tmp_path / name), lambda: Samples.load(tmp_path / name)):
        with pytest.raises(ValueError, match=r"\.xyz, \.dcd, \.npz"):
            call()
    assert set(SUPPORTED_SUFFIXES) == {".xyz", ".dcd", ".npz"}


def test_npy_is_read_but_not_written(tmp_path: Path):
    with pytest.raises(ValueError, match=r"\.xyz, \.dcd, \.npz"):
        _make("dw4", n=2).save(tmp_path / "s.npy")
    with pytest.raises(FileNotFoundError, match="no such sample file"):
        Samples.load(tmp_path / "s.npy", n_particles=4, spatial_dim=2)


@pytest.mark.parametrize("suffix", FORMATS)
def test_wrong_particle_count_and_dim(suffix: str, tmp_path: Path):
    _make("dw4", n=3).save(tmp_path / f"s{suffix}")
    with pytest.raises(ValueError, match=r"4 particles.*n_particles=13"):
        Samples.load(tmp_path / f"s{suffix}", n_particles=13)
    with pytest.raises(ValueError, match=r"2D.*spatial_dim=3"):
        Samples.load(tmp_path / f"s{suffix}", spatial_dim=3)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_damaged_files(suffix: str, damage: str, tmp_path: Path):
    path = tmp_path / f"s{suffix}"
    _make("lj13", n=20).save(path)
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    else:
        path.write_bytes(b"this is not a trajectory file\n" * 20)
    with pytest.raises(ValueError, match=str(path.name)):
        Samples.load(path)


def test_npz_missing_arrays_and_future_version(tmp_path: Path):
    np.savez(tmp_path / "a.npz", positions=np.zeros((2, 4, 2)), format_version=np.array(1))
    with pytest.raises(ValueError, match="missing arrays"):
        Samples.load(tmp_path / "a.npz")
    np.savez(tmp_path / "plain.npz", positions=np.zeros((2, 4, 2)))  # a plain position array: needs the shape
    with pytest.raises(ValueError, match="plain position array: pass n_particles and spatial_dim"):
        Samples.load(tmp_path / "plain.npz")
    assert len(Samples.load(tmp_path / "plain.npz", n_particles=4, spatial_dim=2)) == 2
    np.savez(
        tmp_path / "b.npz", positions=np.zeros((2, 4, 2)), metadata=np.array("{}"), format_version=np.array(99)
    )
    with pytest.raises(ValueError, match="version 99"):
        Samples.load(tmp_path / "b.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "obj.npz").write_bytes((tmp_path / "obj.npy").read_bytes())  # pickled content is refused
    with pytest.raises(ValueError, match=r"obj\.npz"):
        Samples.load(tmp_path / "obj.npz")


def test_dcd_sidecar_mismatch(tmp_path: Path):
    _make("dw4", n=3).save(tmp_path / "s.dcd")
    side = json.loads((tmp_path / "s.json").read_text())
    side["n_frames"] = 4
    (tmp_path / "s.json").write_text(json.dumps(side))
    with pytest.raises(ValueError, match="records 4"):
        Samples.load(tmp_path / "s.dcd")
    (tmp_path / "s.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not an idem_md sample sidecar"):
        Samples.load(tmp_path / "s.dcd")


def test_xyz_cut_at_frame_boundary_is_detected(tmp_path: Path):
    path = tmp_path / "s.xyz"
    _make("dw4", n=5).save(path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: 3 * (4 + 2)]))  # first 3 whole frames of 4 atoms
    with pytest.raises(ValueError, match="lists 5 frames but 3 were read"):
        Samples.load(path)


def test_plain_position_arrays_load_as_npy_and_npz(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)  # DW-4 rows, particle-major
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", positions=x.reshape(6, 4, 2))
    np.savez(tmp_path / "c.npz", x)
    for name in ("a.npy", "b.npz", "c.npz"):
        s = Samples.load(tmp_path / name, n_particles=4, spatial_dim=2)
        assert s.positions.shape == (6, 4, 2) and s.energies is None
        assert np.array_equal(s.positions.numpy(), x.reshape(6, 4, 2))
    with pytest.raises(ValueError, match="pass n_particles and spatial_dim"):
        Samples.load(tmp_path / "a.npy")
    with pytest.raises(ValueError, match=r"must have shape \(N, 39\)"):
        Samples.load(tmp_path / "a.npy", n_particles=13, spatial_dim=3)
    np.savez(tmp_path / "d.npz", a=x, b=x)
    with pytest.raises(ValueError, match="expected a 'positions' array or a single array"):
        Samples.load(tmp_path / "d.npz", n_particles=4, spatial_dim=2)


def test_output_path_in_an_unwritable_directory_is_refused_before_any_work():
    from idem_md.io import check_output_path

    with pytest.raises(PermissionError, match="directory /proc is not writable"):
        check_output_path("/proc/samples.npz")


# ------------------------------------------------------------- one length convention (#15.5)
def _file_angstrom(path: Path) -> np.ndarray:
    """The coordinates a trajectory file holds, in Angstrom, read without idem_md."""
    if path.suffix == ".xyz":
        import ase.io

        return np.stack([a.positions for a in ase.io.read(str(path), index=":")])
    import mdtraj as md

    return md.load(str(path), top=str(path.with_suffix(".pdb"))).xyz.astype(np.float64) * ANGSTROM_PER_NM


@pytest.mark.parametrize("system", ["lj13", "dw4"])
def test_xyz_dcd_npz_round_trip_gives_identical_coordinates(system: str, tmp_path: Path):
    s = _make(system, n=5)
    current = s
    for suffix in (".xyz", ".dcd", ".npz", ".xyz"):  # each load feeds the next save
        current.save(tmp_path / f"{len(list(tmp_path.iterdir()))}{suffix}")
        current = Samples.load(sorted(tmp_path.glob(f"*{suffix}"))[-1])
        np.testing.assert_allclose(current.positions.numpy(), s.positions.numpy(), rtol=0, atol=2e-6)
    # and the numbers in the two trajectory files agree: no factor 10 between .xyz and .dcd
    s.save(tmp_path / "same.xyz")
    s.save(tmp_path / "same.dcd")
    a, b = _file_angstrom(tmp_path / "same.xyz"), _file_angstrom(tmp_path / "same.dcd")
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a[..., : s.spatial_dim], s.positions.numpy(), rtol=0, atol=1e-6)


def test_real_system_lengths_in_the_engine_unit(tmp_path: Path):
    x = torch.randn(3, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))  # nm
    s = Samples(x, None, {"system": "my_molecule", "length_unit": "nm"})
    for suffix in (".xyz", ".dcd"):
        s.save(tmp_path / f"m{suffix}")
        np.testing.assert_allclose(_file_angstrom(tmp_path / f"m{suffix}"), x.numpy() * ANGSTROM_PER_NM, atol=1e-5)
        back = Samples.load(tmp_path / f"m{suffix}")
        assert back.length_unit == "nm"
        np.testing.assert_allclose(back.positions.numpy(), x.numpy(), atol=1e-6)
    (tmp_path / "m.json").unlink()  # a foreign DCD: the caller names the unit
    np.testing.assert_allclose(Samples.load(tmp_path / "m.dcd", length_unit="nm").positions.numpy(), x.numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(Samples.load(tmp_path / "m.dcd").positions.numpy(), 10 * x.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="length_unit must be one of"):
        Samples(x, None, {"length_unit": "furlong"}).save(tmp_path / "bad.xyz")


def test_version_1_dcd_files_still_load_in_their_convention(tmp_path: Path):
    """Files written before the single convention held one reduced unit as one nanometre."""
    s = _make("lj13", n=3)
    as_nm = Samples(s.positions, s.energies, {**s.metadata, "length_unit": "nm"})  # what version 1 wrote
    as_nm.save(tmp_path / "old.dcd")
    side = json.loads((tmp_path / "old.json").read_text())
    side["format_version"] = 1
    side.pop("length_unit")
    side["metadata"].pop("length_unit")
    (tmp_path / "old.json").write_text(json.dumps(side))
    back = Samples.load(tmp_path / "old.dcd")
    np.testing.assert_allclose(back.positions.numpy(), s.positions.numpy(), atol=1e-6)
    assert back.metadata == s.metadata


@pytest.mark.parametrize("shape", ["flat", "nested"])
def test_npy_position_arrays_of_either_shape(shape: str, tmp_path: Path):
    x = np.random.default_rng(2).normal(size=(5, 13, 3))
    np.save(tmp_path / "p.npy", x.reshape(5, 39) if shape == "flat" else x)
    s = Samples.load(tmp_path / "p.npy", n_particles=13, spatial_dim=3)
    assert s.positions.shape == (5, 13, 3) and np.array_equal(s.positions.numpy(), x)


def test_samples_from_an_energy_with_a_physical_unit_record_it():
    class _Nm:
        name, n_particles, spatial_dim, kT, length_unit = "toy", 2, 3, 1.0, "nm"

        def energy(self, x):
            return (x**2).flatten(1).sum(1)

    s = Samples.from_array(torch.ones(4, 6), 2, 3, energy=_Nm())
    assert s.length_unit == "nm" and torch.equal(s.energies, torch.full((4,), 6.0))
