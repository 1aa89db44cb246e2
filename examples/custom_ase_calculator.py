"""Sample a small metal cluster under one of ASE's own calculators with iDEM, and check it against ASE MD.

What it shows
-------------
* :class:`idem_md.energies.ase_bridge.ASEEnergy` turns any ASE calculator into an iDEM target:
  here ASE's effective-medium-theory calculator :class:`ase.calculators.emt.EMT` on a Cu5 cluster.
  Coordinates are in Angstrom; energies are divided by ``k_B T`` (in eV), so the target's kT is 1.
* Temperature: 800 K, i.e. ``k_B T`` = 0.069 eV (pick 300-1000 K with ``--temperature``). In EMT the
  relaxed Cu5 lies 12.2 eV (about 175 kT at 800 K) below five free atoms, so pulling one atom out
  costs tens of kT and the cluster does not evaporate, while its vibrations are wide enough for a
  small network to learn in a short run; colder runs make the density narrower (vibrational
  amplitudes scale as sqrt(T)) and so harder to fit with the same budget.
* ``coordinate_scale`` = 2.5 Angstrom (about the Cu-Cu distance): the network and the noise schedule
  then see lengths of order one, like LJ-13 in units of r_m, so the generic particle preset applies;
  ``sigma_max`` = 1 (2.5 Angstrom of noise) already erases the cluster's structure, and a larger one
  only scatters atoms beyond EMT's cutoff, where no force pulls them back.
* A flat-bottom spring on every pair beyond 5 Angstrom (ASE's own :class:`ase.constraints.Hookean`,
  whose energy and forces ``atoms.get_potential_energy()`` / ``get_forces()`` add to EMT's). A free
  cluster's Boltzmann density is not normalisable (an evaporated atom feels no force, and space is
  infinite); the tether is the usual container, like LJ-13's centring oscillator. It never acts in the
  bound cluster (MD's largest pair distance at 800 K stays below 4.6 Angstrom), but without it a short
  iDEM run left a fraction of its samples with an atom stranded 10 Angstrom away.
* After training, samples are written as an extended-XYZ trajectory through :func:`ase.io.write` with
  the real species (Cu) and per-frame energies in eV, a short ASE Langevin MD of the same calculator
  is written the same way, and the mean energies are compared with the minimum (ASE's BFGS) and the
  harmonic estimate ``<E> ~ E_min + (3n - 6)/2 kT``, beside the metrics of
  :func:`idem_md.compare_with_md` and energy/distance histograms.

Cost, honestly: ASE calculators evaluate one configuration at a time in Python, and ``ASEEnergy``
loops over the batch. Every iDEM training step costs ``batch_size x K`` such calls (about 1 ms each
for EMT on Cu5 here), so the normal mode below spends about 1000 calls per step, and training is
dominated by the calculator, not by the network. Engine-backed energies are expensive; iDEM's
K x batch cost per step is the price. MD needs one call per step.

Run
---
::

    python examples/custom_ase_calculator.py           # real run, ~5-10 min on a 2-core laptop CPU
    python examples/custom_ase_calculator.py --fast    # smoke run, seconds: numbers mean nothing
    python examples/custom_ase_calculator.py --temperature 500

Normal mode settings (``NORMAL``): batch 16, K = 64 (1024 EMT calls per step), 25 inner steps x 12
outer iterations (about 0.3 M EMT calls), a small e3nn network, 100 reverse-SDE steps, 500 samples;
MD: 500 samples 10 steps (20 fs) apart after 2000 equilibration steps of 2 fs. What to expect at this
budget (a run here, ~5 min): the iDEM samples are bound clusters with the right Cu-Cu distances
(distance W2 ~0.16 Angstrom against MD), but too hot: their median energy lay ~15 kT above MD's
(which sits at the harmonic estimate) and the energy histogram has a tail. The Boltzmann density at
800 K is narrow compared with the noise schedule, and fitting it takes far more training than this
(the LJ-13 preset, from the paper, uses batch 512 x K = 1000 per step, 500x this run's); a learning
rate of 3e-4 did not change this.

Writes into ``--out`` (default: a new folder ``custom_ase_calculator-N`` in the current directory):
``idem_cu5.xyz``, ``md_cu5.xyz``, ``energy_histogram.png``, ``distance_histogram.png``, ``comparison.md``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from idem_md.io import new_output_dir  # re-exported: an empty output folder

__all__ = [
    "main", "parse_args", "new_output_dir", "make_cluster", "minimum_energy",
    "ase_langevin_md", "write_xyz", "NORMAL", "FAST",
]

SYMBOLS = "Cu5"
TEMPERATURE_K = 800.0
BOND_ANGSTROM = 2.5  # about the Cu-Cu distance in a small cluster: the working length unit
TETHER_ANGSTROM = 5.0  # pairs farther apart than this feel a Hookean pull back (never in the bound cluster)
TETHER_EV_PER_ANGSTROM2 = 1.0

NORMAL: dict[str, Any] = dict(
    idem=dict(batch_size=16, num_mc_samples=64, inner_steps=25, outer_iterations=12, samples_per_outer=128,
              buffer_size=2000, sde_steps=100, sample_batch_size=500, sigma_max=1.0,
              network_options=dict(hidden_irreps="16x0e + 4x1o", n_layers=2, n_radial_basis=8, radial_hidden=32,
                                   time_embedding_dim=16)),
    n_samples=500,
    md=dict(timestep_fs=2.0, friction_per_fs=0.01, n_equilibration_steps=2000, steps_between_samples=10),
    eval=dict(n_batches=4, batch_size=125, geometric_max_samples=100),
)
FAST: dict[str, Any] = dict(
    idem=dict(batch_size=4, num_mc_samples=8, inner_steps=2, outer_iterations=1, samples_per_outer=16,
              buffer_size=64, sde_steps=10, sample_batch_size=64, sigma_max=1.0,
              network_options=dict(hidden_irreps="8x0e + 2x1o", n_layers=1, n_radial_basis=4, radial_hidden=8,
                                   time_embedding_dim=8)),
    n_samples=32,
    md=dict(timestep_fs=2.0, friction_per_fs=0.01, n_equilibration_steps=100, steps_between_samples=5),
    eval=dict(n_batches=2, batch_size=16, geometric_max_samples=8),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="tiny smoke-test settings (seconds)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: a new folder custom_ase_calculator-N in the current directory)")
    parser.add_argument("--temperature", type=float, default=TEMPERATURE_K,
                        help=f"temperature in K (default {TEMPERATURE_K:g})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler and the MD (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if not args.temperature > 0:
        parser.error(f"--temperature must be > 0 K, got {args.temperature}")
    return args


def make_cluster(seed: int):
    """A compact, slightly jittered Cu5 start (Angstrom) with the EMT calculator and pair tethers attached."""
    from ase import Atoms
    from ase.calculators.emt import EMT
    from ase.constraints import Hookean

    rng = np.random.default_rng(seed)
    bipyramid = np.array([[0, 0, 0], [1, 0, 0], [0.5, np.sqrt(3) / 2, 0],
                          [0.5, np.sqrt(3) / 6, np.sqrt(2 / 3)], [0.5, np.sqrt(3) / 6, -np.sqrt(2 / 3)]])
    atoms = Atoms(SYMBOLS, positions=bipyramid * BOND_ANGSTROM + 0.05 * rng.normal(size=(5, 3)))
    atoms.calc = EMT()
    # A flat-bottom spring on every pair (ASE's Hookean constraint adds its energy and forces to the
    # calculator's): zero inside the cluster, it only pulls back an atom that has left it.
    atoms.set_constraint([Hookean(a1=i, a2=j, k=TETHER_EV_PER_ANGSTROM2, rt=TETHER_ANGSTROM)
                          for i in range(len(atoms)) for j in range(i + 1, len(atoms))])
    return atoms


def minimum_energy(atoms) -> float:
    """Relax a copy of ``atoms`` with ASE's BFGS; returns its energy in eV."""
    from ase.optimize import BFGS

    relaxed = atoms.copy()
    relaxed.calc = atoms.calc
    BFGS(relaxed, logfile=None).run(fmax=1e-5, steps=1000)
    return float(relaxed.get_potential_energy())


def ase_langevin_md(atoms, n_samples: int, temperature_k: float, *, timestep_fs: float, friction_per_fs: float,
                    n_equilibration_steps: int, steps_between_samples: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """ASE Langevin dynamics of ``atoms`` (its calculator attached).

    Returns
    -------
    positions : numpy.ndarray
        ``(n_samples, n, 3)`` Angstrom, centre of mass removed (the frame iDEM samples in).
    energies : numpy.ndarray
        ``(n_samples,)`` potential energies in eV.
    n_steps : int
        MD steps taken = calculator calls spent on dynamics.
    """
    from ase import units
    from ase.md.langevin import Langevin

    md_atoms = atoms.copy()
    md_atoms.calc = atoms.calc
    dyn = Langevin(md_atoms, timestep_fs * units.fs, temperature_K=temperature_k,
                   friction=friction_per_fs / units.fs, fixcm=False, rng=np.random.default_rng(seed))
    dyn.run(n_equilibration_steps)  # starts at rest; the thermostat brings it to temperature
    xs, es = [], []
    for _ in range(n_samples):
        dyn.run(steps_between_samples)
        x = md_atoms.get_positions()
        xs.append(x - md_atoms.get_center_of_mass())
        es.append(md_atoms.get_potential_energy())
    return np.stack(xs), np.asarray(es), n_equilibration_steps + n_samples * steps_between_samples


def write_xyz(path: Path, symbols: str, positions: np.ndarray, energies_ev: np.ndarray) -> Path:
    """Extended XYZ through ASE with the real species and per-frame energies (eV)."""
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    if path.exists():
        raise FileExistsError(f"{path} exists")
    frames = []
    for x, e in zip(positions, energies_ev, strict=True):
        frame = Atoms(symbols, positions=x)
        frame.calc = SinglePointCalculator(frame, energy=float(e))
        frames.append(frame)
    ase.io.write(path, frames, format="extxyz")
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example.

    Returns ``{"files": [Path, ...], "table": str, "reports": {"idem", "md"}, "mean_energy": {"iDEM", "MD"},
    "median_energy": {"iDEM", "MD"}}``, energies in kT.
    """
    import torch

    from idem_md import IDEMSampler, compare_with_md
    from idem_md.energies.ase_bridge import ASEEnergy
    from idem_md.io import Samples
    from idem_md.plots import save_figure

    args = parse_args(argv)
    settings = FAST if args.fast else NORMAL
    progress = not args.quiet
    out = new_output_dir(args.out, "custom_ase_calculator")
    t0 = time.perf_counter()

    atoms = make_cluster(args.seed)
    energy = ASEEnergy(atoms, atoms.calc, temperature=args.temperature, name="cu5-emt")
    kT_ev = energy.kT_ev
    e_min = minimum_energy(atoms) / kT_ev  # kT

    print(f"[1/3] training iDEM on {SYMBOLS} with ASE's EMT at {args.temperature:g} K "
          f"({'fast smoke run' if args.fast else 'several minutes: every step costs batch x K EMT calls'})",
          flush=True)
    config = dict(settings["idem"], coordinate_scale=BOND_ANGSTROM, seed=args.seed)
    sampler = IDEMSampler(energy, config=config, device="cpu")
    sampler.fit(progress=progress)
    samples = sampler.sample(settings["n_samples"], progress=progress)  # Angstrom, energies in kT
    files = [write_xyz(out / "idem_cu5.xyz", SYMBOLS, samples.positions.numpy(), samples.energies.numpy() * kT_ev)]

    print("[2/3] ASE Langevin MD with the same calculator", flush=True)
    x_md, e_md_ev, md_steps = ase_langevin_md(atoms, settings["n_samples"], args.temperature, seed=args.seed,
                                              **settings["md"])
    files.append(write_xyz(out / "md_cu5.xyz", SYMBOLS, x_md, e_md_ev))
    md_samples = Samples(torch.as_tensor(x_md), torch.as_tensor(e_md_ev / kT_ev),
                         {"system": energy.name, "kT": energy.kT, "source": "md", "energy_evaluations": md_steps})

    print("[3/3] comparison", flush=True)
    table, reports, figures = compare_with_md(samples, md_samples, energy, **settings["eval"])
    for name, fig in figures.items():
        files.append(save_figure(fig, out / f"{name}.png"))
    (out / "comparison.md").write_text(table + "\n")
    files.append(out / "comparison.md")

    n = energy.n_particles
    mean_energy = {"iDEM": float(samples.energies.mean()), "MD": float(md_samples.energies.mean())}
    median_energy = {"iDEM": float(samples.energies.median()), "MD": float(md_samples.energies.median())}
    print()
    print(table)
    print(f"\nenergies in kT (1 kT = {kT_ev:.4f} eV at {args.temperature:g} K; EMT's zero is the bulk metal):")
    print(f"  minimum (ASE BFGS)                 {e_min:9.2f}")
    print(f"  harmonic estimate E_min + (3n-6)/2 {e_min + (3 * n - 6) / 2:9.2f}")
    print(f"  iDEM samples: mean, median         {mean_energy['iDEM']:9.2f}, {median_energy['iDEM']:.2f}")
    print(f"  ASE MD samples: mean, median       {mean_energy['MD']:9.2f}, {median_energy['MD']:.2f}")
    print(f"EMT calls: iDEM {sampler.energy_evaluations:,} (training + sampling), MD {md_steps:,}")
    print("wrote:\n  " + "\n  ".join(str(p) for p in files))
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    return {"files": [Path(p) for p in files], "table": table, "reports": reports, "mean_energy": mean_energy,
            "median_energy": median_energy}


if __name__ == "__main__":
    import sys

    from idem_md.cli import run_guarded  # errors as one line (exit 2), not a traceback

    sys.exit(run_guarded(Path(__file__).name, main))
