"""iDEM on alanine dipeptide in vacuum beside OpenMM Langevin MD: Ramachandran plot, energies, basin free energies.

What it shows
-------------
1. The registered system ``aldp``: ACE-ALA-NME with AMBER ff14SB, no cutoff, no constraints, at 300 K
   (:class:`idem_md.energies.alanine.AlanineDipeptide`, evaluated by the batched force-field kernel
   :class:`idem_md.energies.forcefield.ForceFieldEnergy`; nm and kT). The e3nn score network gets one
   type per atom kind (``energy.particle_types()``), so it can tell a hydrogen from a carbon.
2. Train an :class:`idem_md.IDEMSampler` (preset ``aldp``: working unit 1 A) on a CPU, draw samples,
   and correct them with ``relax`` (minimise + short Langevin, ``--correct``; not exact).
3. Run OpenMM Langevin MD of the same System (``run_md``: OpenMM with the real masses, 1 fs steps).
4. Compare through mdtraj: the Ramachandran (phi, psi) histograms side by side, the energy histogram,
   and the free-energy differences between the main basins: right (0 <= phi < 2.2 rad, C7ax / alpha_L)
   against left (the rest), and, inside the left basin, alpha_R (-2.0 < psi < 0.4 rad) against
   beta / C7eq. ``dF = -kT ln(p_a / p_b)``; errors are binomial (independent samples assumed).

Run
---
::

    python examples/alanine_dipeptide.py           # real run: about 30 min on one CPU core
    python examples/alanine_dipeptide.py --fast    # smoke run, seconds: the numbers mean nothing

Expect iDEM to be poor here: a short CPU run is far below what molecules need (docs/results.md has a
run's numbers beside MD's).

Writes into ``--out`` (default: a new folder ``alanine_dipeptide-N`` in the current directory):
``idem_aldp.{dcd,pdb,json}`` (raw samples), ``idem_aldp_corrected.{dcd,pdb,json}``,
``md_aldp.{dcd,pdb,json}``, ``ramachandran.png``, ``energy_histogram.png``, ``comparison.md`` and
``checkpoint.pt`` (``idem-md sample`` draws more from it).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from idem_md.io import new_output_dir  # an empty output folder

__all__ = ["main", "parse_args", "new_output_dir", "BasinFreeEnergies", "basin_free_energies", "ramachandran",
           "ramachandran_figure", "ramachandran_tvd", "NORMAL", "FAST"]

#: Right-basin bounds on phi (rad): C7ax / alpha_L (the usual split of vacuum alanine dipeptide).
RIGHT_PHI = (0.0, 2.2)
#: alpha_R bounds on psi (rad) inside the left basin.
ALPHA_R_PSI = (-2.0, 0.4)
#: relax minimises configurations whose largest force component exceeds this (kT/nm): ff14SB bonds at
#: 300 K give thermal components up to ~2000 kT/nm, so only strained samples are minimised first.
RELAX_MAX_FORCE_KT_PER_NM = 5000.0

#: Settings of the real run (see the module docstring).
NORMAL: dict[str, Any] = dict(
    idem=dict(batch_size=64, num_mc_samples=128, inner_steps=25, outer_iterations=40, samples_per_outer=64,
              buffer_size=2000, sde_steps=100, sample_batch_size=500,
              network_options=dict(hidden_irreps="16x0e + 4x1o", n_layers=2, n_radial_basis=12, radial_hidden=32,
                                   time_embedding_dim=16)),
    n_samples=1000,
    relax_steps=100,
    md=dict(timestep=0.001, friction=1.0, n_equilibration_steps=20_000, thinning="auto", n_pilot_steps=50_000,
            seed=0),
)
#: Smoke-test settings: every step runs, in seconds; the numbers are meaningless.
FAST: dict[str, Any] = dict(
    idem=dict(batch_size=8, num_mc_samples=16, inner_steps=2, outer_iterations=1, samples_per_outer=16,
              buffer_size=64, sde_steps=10, sample_batch_size=64,
              network_options=dict(hidden_irreps="8x0e + 2x1o", n_layers=1, n_radial_basis=4, radial_hidden=8,
                                   time_embedding_dim=8)),
    n_samples=48,
    relax_steps=5,
    md=dict(timestep=0.001, friction=1.0, n_equilibration_steps=200, thinning=10, seed=0,
            max_minimization_evaluations=50),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="tiny smoke-test settings (seconds)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: a new folder alanine_dipeptide-N in the current directory)")
    parser.add_argument("--correct", choices=("none", "relax"), default="relax",
                        help="correction of the iDEM samples (default relax: minimise + short Langevin, not exact)")
    parser.add_argument("--temperature", type=float, default=300.0, help="kelvin (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


# ------------------------------------------------------------------ analysis
def ramachandran(positions: np.ndarray, topology) -> tuple[np.ndarray, np.ndarray]:
    """Backbone dihedrals (phi, psi) in rad, each ``(N,)``, of ``positions`` (N, 22, 3) nm, via mdtraj."""
    import mdtraj as md

    traj = md.Trajectory(np.asarray(positions, dtype=np.float32), md.Topology.from_openmm(topology))
    _, phi = md.compute_phi(traj)
    _, psi = md.compute_psi(traj)
    return phi[:, 0].astype(np.float64), psi[:, 0].astype(np.float64)


class BasinFreeEnergies(NamedTuple):
    """Basin populations and free-energy differences (kT) of one sample set (a typed, immutable record).

    ``dF_right_left = -ln(p_right / p_left)``; ``dF_alphaR_beta = -ln(p_alphaR / p_beta)`` inside the
    left basin; their errors are binomial standard errors propagated to first order (nan where a basin
    is empty, when the difference itself is inf).
    """

    n: int
    p_right: float
    p_alpha_r: float
    dF_right_left: float
    dF_right_left_error: float
    dF_alphaR_beta: float
    dF_alphaR_beta_error: float


def _log_ratio(a: int, b: int) -> tuple[float, float]:
    if a == 0 or b == 0:
        return (math.inf if a == 0 else -math.inf) if a != b else math.nan, math.nan
    return -math.log(a / b), math.sqrt(1.0 / a + 1.0 / b)


def basin_free_energies(phi: np.ndarray, psi: np.ndarray) -> BasinFreeEnergies:
    """Populations and free-energy differences of the main basins (see the module docstring)."""
    right = (phi >= RIGHT_PHI[0]) & (phi < RIGHT_PHI[1])
    alpha = ~right & (psi > ALPHA_R_PSI[0]) & (psi < ALPHA_R_PSI[1])
    n_right, n_alpha, n = int(right.sum()), int(alpha.sum()), len(phi)
    n_left = n - n_right
    rl, rl_err = _log_ratio(n_right, n_left)
    ab, ab_err = _log_ratio(n_alpha, n_left - n_alpha)
    return BasinFreeEnergies(n, n_right / max(n, 1), n_alpha / max(n_left, 1), rl, rl_err, ab, ab_err)


def _histogram2d(phi: np.ndarray, psi: np.ndarray, bins: int = 36) -> np.ndarray:
    h, _, _ = np.histogram2d(phi, psi, bins=bins, range=[[-math.pi, math.pi], [-math.pi, math.pi]])
    return h / max(h.sum(), 1.0)


def ramachandran_tvd(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], bins: int = 36) -> float:
    """Total-variation distance between two (phi, psi) histograms on a ``bins`` x ``bins`` grid (0..1)."""
    return 0.5 * float(np.abs(_histogram2d(*a, bins) - _histogram2d(*b, bins)).sum())


def ramachandran_figure(sets: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Side-by-side (phi, psi) histograms in degrees, log density (a plain matplotlib Figure)."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(sets), 4.0), layout="constrained")
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    for ax, (label, (phi, psi)) in zip(axes, sets.items()):
        ax.hist2d(np.degrees(phi), np.degrees(psi), bins=72, range=[[-180, 180], [-180, 180]], norm=LogNorm(),
                  cmap="viridis")
        ax.set_title(f"{label} (N = {len(phi)})")
        ax.set_xlabel("phi (degrees)")
        ax.set_ylabel("psi (degrees)")
        ax.set_aspect("equal")
    return fig


# ------------------------------------------------------------------ steps
def train_and_sample(target, settings: dict[str, Any], args, out: Path):
    """Fit iDEM, save its checkpoint; return ``(sampler, raw Samples, corrected Samples)``; the corrected set
    is the raw set after :func:`idem_md.correct.relax` (its evaluations are added to the sampler's counters)."""
    import torch

    from idem_md import IDEMSampler
    from idem_md.correct.relax import relax
    from idem_md.io import Samples

    energy, progress = target.energy, not args.quiet
    idem = dict(settings["idem"], seed=args.seed)
    idem["network_options"] = dict(idem["network_options"], particle_types=energy.particle_types())
    sampler = IDEMSampler(energy, config=idem, device="cpu")
    sampler.fit(progress=progress, checkpoint_path=out / "checkpoint.pt")
    raw = sampler.sample(settings["n_samples"], progress=progress)
    if args.correct == "none":
        return sampler, raw, raw
    res = relax(energy, raw.positions, langevin_steps=settings["relax_steps"], max_force=RELAX_MAX_FORCE_KT_PER_NM,
                generator=torch.Generator().manual_seed(args.seed))
    sampler.counters["correction"] += res.n_energy_evaluations
    corrected = Samples(res.positions.float(), res.energies.float(),
                        dict(raw.metadata, source="idem+relax", correction=res.summary()))
    return sampler, raw, corrected


def _save(samples, path: Path, target) -> list[Path]:
    from idem_md.targets import write_topology_beside

    written = samples.save(path)
    write_topology_beside(written, target)  # real atom names and elements in the .pdb
    return list(written)


def _table(rows: dict[str, dict[str, Any]], md_label: str) -> str:
    """Markdown table of the per-set figures."""
    head = ("set", "N", "median E (kT)", "mean E (kT)", "p(right)", "dF right-left (kT)", "p(alpha_R | left)",
            "dF alpha_R-beta (kT)", "Ramachandran TVD vs MD")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in rows.items():
        b: BasinFreeEnergies = r["basins"]
        tvd = "-" if label == md_label else f"{r['tvd']:.3f}"
        lines.append(f"| {label} | {b.n} | {r['median']:.2f} | {r['mean']:.4g} | {b.p_right:.4f} | "
                     f"{b.dF_right_left:.2f} +- {b.dF_right_left_error:.2f} | {b.p_alpha_r:.3f} | "
                     f"{b.dF_alphaR_beta:.2f} +- {b.dF_alphaR_beta_error:.2f} | {tvd} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; returns ``{"files": [...], "table": str, "basins": {label: BasinFreeEnergies}}``."""
    from idem_md.md import MDConfig, run_md
    from idem_md.plots import energy_histogram, save_figure
    from idem_md.targets import resolve_target

    args = parse_args(argv)
    settings = FAST if args.fast else NORMAL
    out = new_output_dir(args.out, "alanine_dipeptide")
    t0 = time.perf_counter()
    target = resolve_target("aldp", temperature=args.temperature)  # nm, kT; ff14SB in vacuum
    energy = target.energy

    print(f"[1/4] training iDEM on alanine dipeptide ({'fast smoke run' if args.fast else 'about 30 min'})", flush=True)
    sampler, raw, corrected = train_and_sample(target, settings, args, out)
    files = _save(raw, out / "idem_aldp.dcd", target)
    files += _save(corrected, out / "idem_aldp_corrected.dcd", target)

    print("[2/4] OpenMM Langevin MD of the same System", flush=True)
    md_run = run_md(energy, settings["n_samples"], MDConfig(**settings["md"]), progress=not args.quiet)
    md_samples = md_run.to_samples()
    files += _save(md_samples, out / "md_aldp.dcd", target)

    print("[3/4] Ramachandran angles with mdtraj, basin free energies", flush=True)
    sets = {"iDEM raw": raw, f"iDEM + {args.correct}": corrected, "MD (OpenMM)": md_samples}
    if args.correct == "none":
        sets.pop(f"iDEM + {args.correct}")
    angles = {k: ramachandran(s.positions.detach().double().numpy(), target.topology) for k, s in sets.items()}
    rows = {}
    for label, s in sets.items():
        e = s.energies if s.energies is not None else energy.energy(s.positions.double())
        rows[label] = dict(basins=basin_free_energies(*angles[label]), median=float(e.median()),
                           mean=float(e.double().mean()), tvd=ramachandran_tvd(angles[label], angles["MD (OpenMM)"]))
    files.append(save_figure(ramachandran_figure(angles), out / "ramachandran.png"))

    print("[4/4] energy histogram and the comparison table", flush=True)
    energies = {k: (s.energies if s.energies is not None else energy.energy(s.positions.double())) for k, s in sets.items()}
    lo = float(min(e.min() for e in energies.values()))
    hi = float(np.percentile(np.concatenate([e.double().numpy() for e in energies.values()]), 99))
    files.append(save_figure(energy_histogram(energies, range=(lo, max(hi, lo + 1.0))), out / "energy_histogram.png"))
    table = _table(rows, "MD (OpenMM)")
    (out / "comparison.md").write_text(table + "\n")
    files += [out / "comparison.md", out / "checkpoint.pt"]

    print()
    print(table)
    print(f"energy evaluations: iDEM {sampler.energy_evaluations:,} (training + sampling + correction), "
          f"MD {md_run.n_energy_evaluations:,}")
    print("wrote:\n  " + "\n  ".join(str(p) for p in files))
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    return {"files": [Path(p) for p in files], "table": table, "basins": {k: r["basins"] for k, r in rows.items()}}


if __name__ == "__main__":
    import sys

    from idem_md.cli import run_guarded  # errors as one line (exit 2), not a traceback

    sys.exit(run_guarded(Path(__file__).name, main))
