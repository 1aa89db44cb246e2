"""The examples/ scripts and notebook run end to end in their fast modes and write what they say.

Each script is imported by path and its ``main(["--fast", "--out", DIR])`` is run; the notebook is
executed headless with nbclient (its default ``FAST = True``).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCRIPTS = ("lj13_vs_openmm", "custom_ase_calculator", "custom_openmm_system", "alanine_dipeptide",
           "custom_pair_potential")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Run the tiny fast-mode workloads on one thread, here and in the notebook kernel: on a shared,
    loaded 2-core machine, spinning OpenMP / numba worker threads made a tiny e3nn forward or a DW-4
    energy call ~100x slower than the single-threaded one. Restored afterwards."""
    import numba  # imported before the variables below are set, so this process keeps its thread pool size
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):  # for the notebook's kernel process
        monkeypatch.setenv(var, "1")
    yield
    torch.set_num_threads(before[0])
    numba.set_num_threads(before[1])


def _load(name: str):
    """Import ``examples/<name>.py`` as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"idem_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_fast(name: str, out: Path) -> dict:
    return _load(name).main(["--fast", "--out", str(out), "--quiet"])


def _assert_written(out: Path, result: dict, expected: list[str], stdout: str) -> None:
    """Every expected file exists, is non-empty, is reported in ``result["files"]`` and printed."""
    for name in expected:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, f"{name} missing or empty"
        assert path in result["files"], f"{name} not in the returned file list"
        assert str(path) in stdout, f"{name} not in the printed summary"
    assert sorted(p.name for p in result["files"]) == sorted(expected)
    for png in (p for p in result["files"] if p.suffix == ".png"):
        assert png.read_bytes()[:8] == PNG_MAGIC, f"{png.name} is not a PNG"


def _assert_docstring_lists(name: str, files: list[str]) -> None:
    doc = _load(name).__doc__
    for f in files:
        stem = f.rsplit(".", 1)[0]
        assert stem in doc, f"the docstring of {name}.py does not mention {f}"


# --------------------------------------------------------------------------- scripts
def test_lj13_vs_openmm_fast(tmp_path, capsys):
    from idem_md.io import Samples

    out = tmp_path / "lj13"
    reference = tmp_path / "reference.npy"  # flat (N, 39) like the paper's test split; any finite configurations do
    np.save(reference, np.random.default_rng(0).normal(scale=0.7, size=(80, 39)))
    result = _load("lj13_vs_openmm").main(["--fast", "--out", str(out), "--quiet", "--reference", str(reference)])
    expected = ["idem_lj13.dcd", "idem_lj13.pdb", "idem_lj13.json", "md_lj13.dcd", "md_lj13.pdb", "md_lj13.json",
                "rdf.png", "energy_histogram.png", "distance_histogram.png", "comparison.md", "checkpoint.pt"]
    stdout = capsys.readouterr().out
    _assert_written(out, result, expected, stdout)
    _assert_docstring_lists("lj13_vs_openmm", expected)
    fast = _load("lj13_vs_openmm").FAST
    for stem, source in (("idem_lj13", "idem"), ("md_lj13", "md")):  # the trajectories read back
        s = Samples.load(out / f"{stem}.dcd", n_particles=13, spatial_dim=3)
        assert len(s) == fast["n_samples"] and s.metadata["source"] == source
        assert s.energies is not None and bool(np.isfinite(s.energies.numpy()).all())
    assert "| energy_mean |" in result["table"] and "energy_mean" in (out / "comparison.md").read_text()
    assert set(result["reports"]) == {"idem", "md"}
    assert all(r.n_reference == 80 for r in result["reports"].values())  # both scored against --reference
    assert "g(r) peak" in stdout


def test_lj13_reference_loader_reads_the_usual_layouts(tmp_path):
    import torch

    from idem_md import get_energy
    from idem_md.io import Samples

    mod = _load("lj13_vs_openmm")
    lj13 = get_energy("lj13")
    x = np.random.default_rng(1).normal(scale=0.7, size=(5, 13, 3)) + 3.0  # off-centre
    np.save(tmp_path / "flat.npy", x.reshape(5, 39))
    np.savez(tmp_path / "plain.npz", positions=x)
    Samples(torch.as_tensor(x)).save(tmp_path / "samples.npz")
    for name in ("flat.npy", "plain.npz"):  # centred, energies computed
        s = mod.load_reference(tmp_path / name, lj13)
        assert s.positions.shape == (5, 13, 3) and s.energies is not None
        assert np.allclose(s.positions.mean(dim=1).numpy(), 0.0, atol=1e-6)
    s = mod.load_reference(tmp_path / "samples.npz", lj13)  # an idem_md Samples file, as saved
    assert np.allclose(s.positions.numpy(), x)
    with pytest.raises(FileNotFoundError, match="--reference"):
        mod.load_reference(tmp_path / "missing.npy", lj13)


def test_custom_ase_calculator_fast(tmp_path, capsys):
    import ase.io

    out = tmp_path / "ase"
    result = _run_fast("custom_ase_calculator", out)
    expected = ["idem_cu5.xyz", "md_cu5.xyz", "energy_histogram.png", "distance_histogram.png", "comparison.md"]
    stdout = capsys.readouterr().out
    _assert_written(out, result, expected, stdout)
    _assert_docstring_lists("custom_ase_calculator", expected)
    mod = _load("custom_ase_calculator")
    n = mod.FAST["n_samples"]
    kT_ev = 8.617333262e-5 * mod.TEMPERATURE_K
    for f, label in (("idem_cu5.xyz", "iDEM"), ("md_cu5.xyz", "MD")):
        frames = ase.io.read(out / f, index=":")
        assert len(frames) == n
        assert frames[0].get_chemical_formula() == "Cu5"
        e_ev = np.array([a.get_potential_energy() for a in frames])  # written in eV, reported in kT
        assert np.mean(e_ev) / kT_ev == pytest.approx(result["mean_energy"][label], rel=1e-5)
    # MD at 800 K stays in the bound cluster: mean energy within a few tens of kT of the minimum
    assert "minimum (ASE BFGS)" in stdout
    e_min = float(stdout.split("minimum (ASE BFGS)")[1].split()[0])
    assert e_min < result["mean_energy"]["MD"] < e_min + 30
    assert np.isfinite(result["mean_energy"]["iDEM"])


def test_ase_target_carries_the_pair_tether():
    """The example's target is EMT plus ASE Hookean pair springs: equal inside the cluster, more beyond."""
    import torch
    from ase.calculators.emt import EMT

    from idem_md.energies.ase_bridge import ASEEnergy

    mod = _load("custom_ase_calculator")
    atoms = mod.make_cluster(seed=0)
    target = ASEEnergy(atoms, atoms.calc, temperature=mod.TEMPERATURE_K)
    bare = atoms.copy()
    bare.set_constraint()
    emt_only = ASEEnergy(bare, EMT(), temperature=mod.TEMPERATURE_K)
    x = torch.as_tensor(atoms.get_positions())[None]  # (1, 5, 3) Angstrom
    far = x.clone()
    far[0, 0, 0] += mod.TETHER_ANGSTROM + 2.0  # atom 0 beyond the tether from every other atom
    e_in, e_far = target.energy(torch.cat([x, far])).tolist()
    ref_in, ref_far = emt_only.energy(torch.cat([x, far])).tolist()
    assert e_in == pytest.approx(ref_in)
    assert e_far > ref_far + 1.0  # kT: the springs pull the stray atom back


@pytest.mark.filterwarnings("ignore:steps=")
def test_custom_pair_potential_fast(tmp_path, capsys):
    """A user's Energy class in a standalone script: trains, exports to OpenMM and ASE, runs MD (issue #16)."""
    out = tmp_path / "out"
    result = _run_fast("custom_pair_potential", out)
    _assert_written(out, result, ["idem_samples.xyz", "md_samples.xyz", "summary.md"], capsys.readouterr().out)
    assert result["openmm_difference"] < 1e-9 and result["ase_difference"] < 1e-9
    assert result["md_engine"] == "openmm"  # chosen through the class's openmm_pair_potential hook
    assert math.isfinite(result["idem_mean_energy"]) and 0 < result["md_mean_energy"] < 20


def test_custom_openmm_system_fast(tmp_path, capsys):
    import openmm

    from idem_md.io import Samples

    out = tmp_path / "omm"
    result = _run_fast("custom_openmm_system", out)
    expected = ["system.xml", "idem_samples.dcd", "idem_samples.pdb", "idem_samples.json", "md_samples.dcd",
                "md_samples.pdb", "md_samples.json", "energy_histogram.png", "distance_histogram.png",
                "comparison.md"]
    stdout = capsys.readouterr().out
    _assert_written(out, result, expected, stdout)
    _assert_docstring_lists("custom_openmm_system", expected)
    system = openmm.XmlSerializer.deserialize((out / "system.xml").read_text())
    assert system.getNumParticles() == 6
    assert sorted(type(f).__name__ for f in system.getForces()) == ["CustomBondForce", "NonbondedForce"]
    assert "minimum (OpenMM minimiser)" in stdout
    e_min = float(stdout.split("minimum (OpenMM minimiser)")[1].split()[0])
    assert e_min < result["mean_energy"]["MD"] < e_min + 30  # 40 K: the cluster stays bound
    md = Samples.load(out / "md_samples.dcd", n_particles=6, spatial_dim=3)
    n = _load("custom_openmm_system").FAST["n_samples"]
    assert len(md) == n and md.metadata["source"] == "md"
    assert float(md.energies.mean()) == pytest.approx(result["mean_energy"]["MD"], rel=1e-6)


def test_alanine_dipeptide_fast(tmp_path, capsys):
    import mdtraj

    out = tmp_path / "aldp"
    result = _run_fast("alanine_dipeptide", out)
    expected = [f"{stem}.{ext}" for stem in ("idem_aldp", "idem_aldp_corrected", "md_aldp") for ext in ("dcd", "pdb", "json")]
    expected += ["ramachandran.png", "energy_histogram.png", "comparison.md", "checkpoint.pt"]
    stdout = capsys.readouterr().out
    _assert_written(out, result, expected, stdout)
    _assert_docstring_lists("alanine_dipeptide", expected)
    traj = mdtraj.load(str(out / "md_aldp.dcd"), top=str(out / "md_aldp.pdb"))  # real atoms, not placeholders
    assert traj.n_atoms == 22 and {a.element.symbol for a in traj.topology.atoms} == {"H", "C", "N", "O"}
    assert len(mdtraj.compute_phi(traj)[0]) == 1
    basins = result["basins"]
    assert set(basins) == {"iDEM raw", "iDEM + relax", "MD (OpenMM)"}
    n = _load("alanine_dipeptide").FAST["n_samples"]
    assert all(b.n == n for b in basins.values()) and "dF right-left" in result["table"]


def test_alanine_dipeptide_basins_and_angles():
    """The example's phi (through mdtraj) is the force field's own dihedral, and the basin split counts right."""
    import torch

    from idem_md.energies.alanine import PHI_ATOMS, PSI_ATOMS, AlanineDipeptide
    from idem_md.energies.forcefield import dihedral

    ex = _load("alanine_dipeptide")
    aldp = AlanineDipeptide()
    x = aldp.initial_positions() + 0.02 * torch.randn(5, 22, 3, generator=torch.Generator().manual_seed(0),
                                                      dtype=torch.float64)
    phi, psi = ex.ramachandran(x.numpy(), aldp.topology)
    ours = dihedral(x, torch.tensor([PHI_ATOMS, PSI_ATOMS]))
    assert np.allclose(phi, ours[:, 0].numpy(), atol=1e-5) and np.allclose(psi, ours[:, 1].numpy(), atol=1e-5)
    b = ex.basin_free_energies(np.array([1.0, -1.5, -1.5, -1.5]), np.array([0.0, 2.5, 2.5, -0.5]))
    assert (b.n, b.p_right, b.p_alpha_r) == (4, 0.25, pytest.approx(1 / 3))
    assert b.dF_right_left == pytest.approx(np.log(3.0)) and b.dF_alphaR_beta == pytest.approx(np.log(2.0))
    assert ex.ramachandran_tvd((phi, psi), (phi, psi)) == 0.0


def test_plain_langevin_loop_samples_the_boltzmann_distribution():
    """The example's hand-written OpenMM loop on a harmonic dimer: <U> matches the exact value."""
    import openmm

    mod = _load("custom_openmm_system")
    k, r0, temperature = 200.0, 0.38, mod.TEMPERATURE_K  # kJ/mol/nm^2, nm, K
    system = openmm.System()
    for _ in range(2):
        system.addParticle(mod.MASS_AMU)
    bond = openmm.HarmonicBondForce()
    bond.addBond(0, 1, r0, k)
    system.addForce(bond)
    x, e, steps = mod.langevin_md(system, np.array([[0.0, 0.0, 0.0], [r0, 0.0, 0.0]]), 2000, temperature,
                                  timestep_ps=0.004, friction_per_ps=5.0, n_equilibration_steps=500,
                                  steps_between_samples=50, seed=1, progress=False)
    assert x.shape == (2000, 2, 3) and e.shape == (2000,) and steps == 500 + 2000 * 50
    assert np.allclose(x.mean(axis=1), 0.0, atol=1e-6)  # centre of mass removed
    kT = 8.314462618e-3 * temperature  # kJ/mol
    r = np.linspace(1e-4, 1.0, 200_001)  # exact <U> of the relative coordinate, density r^2 exp(-U/kT)
    u = 0.5 * k * (r - r0) ** 2
    w = r * r * np.exp(-u / kT)
    exact = float((u * w).sum() / w.sum())  # ~0.51 kT
    assert abs(e.mean() - exact) < 0.15 * kT  # standard error ~0.03 kT


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_refuse_a_non_empty_output_folder(name, tmp_path):
    (tmp_path / "keep.txt").write_text("not yours")
    with pytest.raises(FileExistsError, match="not empty"):
        _load(name).main(["--fast", "--out", str(tmp_path), "--quiet"])
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_default_to_a_new_folder_in_the_cwd(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = _load(name)
    first = mod.new_output_dir(None, "run")
    (first / "x").write_text("used")
    second = mod.new_output_dir(None, "run")
    assert (first.name, second.name) == ("run-1", "run-2") and first.parent == second.parent == tmp_path


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_have_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        _load(name).main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--fast" in text and "--out" in text


# --------------------------------------------------------------------------- notebook
def _kernel_name(tmp_path: Path, monkeypatch) -> str:
    """The ``python3`` kernel of this interpreter; installed into a temporary Jupyter path if missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        prefix = tmp_path / "jupyter-prefix"
        install(prefix=str(prefix), kernel_name="python3")
        monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    return "python3"


def test_notebook_is_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(EXAMPLES / "energy_histograms.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "FAST = True" in code[0].source and "parameters" in code[0].metadata.get("tags", [])


def test_notebook_executes_headless(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(EXAMPLES / "energy_histograms.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name=_kernel_name(tmp_path, monkeypatch),
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # training curves, energy histogram, distance histogram
    text = "".join(o.get("text", "") for o in outputs)
    assert "| energy_w2 |" in text and "Samples(N=" in text
