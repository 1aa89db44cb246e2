#!/usr/bin/env python
"""Generate an MD reference sample set for a benchmark system.

Runs OpenMM Langevin dynamics (:func:`idem_md.md.run_md`) on DW-4, LJ-13 or
LJ-55 at kT = 1 and writes

* ``<out>/md_<system>.npz``: ``positions`` float32 ``(N, n_particles * spatial_dim)``
  (particle-major rows, centre of mass removed, like the reference files in
  ``shared/reference``) and ``energies`` float64 ``(N,)`` (reduced units);
* ``<out>/md_<system>.json``: how it was made (seed, steps, time step, friction,
  thinning, autocorrelation times, wall time, energy evaluations, platform,
  OpenMM version, machine, command) and the energy's mean and std.

Example (the committed sets; wall times in docs/md_baselines.md)::

    python scripts/generate_md_reference.py --system lj13 --n-samples 10000 --seed 0 --out data/

With ``--compare`` it instead compares the generated DW-4 and LJ-13 sets in
``--out`` with the external reference samples (``shared/reference``): energy
mean/std, energy W2, 200-bin interatomic-distance TVD with their sampling-noise
floors, structural populations, and optionally (``--mcmc-steps``) an
independent random-walk Metropolis check started from both sets. It writes
``<out>/md_comparison.json`` and overlay plots ``<img>/md_vs_reference_<system>.png``::

    python scripts/generate_md_reference.py --compare --out data/ --img docs/img --mcmc-steps 100000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform as _platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from idem_md import __version__, get_energy
from idem_md.md import OBSERVABLES, MDConfig, integrated_autocorrelation_time, run_md

SYSTEMS = ("dw4", "lj13", "lj55")
#: External reference files (Klein et al. 2023 MCMC, as distributed with the iDEM code).
REFERENCE_FILES = {"dw4": "test_split_DW4.npy", "lj13": "test_split_LJ13.npy"}
DEFAULT_REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"
#: Random-walk Metropolis proposal std per coordinate (reduced length): ~20-40 % acceptance.
RWM_STEP = {"dw4": 0.25, "lj13": 0.02}
RWM_CHAINS = {"dw4": 2000, "lj13": 1000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--system", choices=SYSTEMS, help="system to generate (required unless --compare)")
    p.add_argument("--n-samples", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("data"))
    p.add_argument("--timestep", type=float, default=0.005, help="ps = reduced time")
    p.add_argument("--friction", type=float, default=1.0, help="1/ps")
    p.add_argument("--n-equilibration-steps", type=int, default=100_000)
    p.add_argument("--n-pilot-steps", type=int, default=1_000_000)
    p.add_argument("--report-interval", type=int, default=20, help="steps between pilot readings")
    p.add_argument("--thinning", type=int, default=None, help='fixed thinning in steps (default: "auto")')
    p.add_argument("--thinning-factor", type=float, default=2.0)
    p.add_argument("--observables", nargs="+", default=list(OBSERVABLES), choices=OBSERVABLES,
                   help="observables whose slowest autocorrelation sets the thinning")
    p.add_argument("--platform", default=None, help="OpenMM platform (default: idem_md.md's choice)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    g = p.add_argument_group("comparison with the external reference (--compare)")
    g.add_argument("--compare", action="store_true", help="compare data/md_{dw4,lj13}.npz with shared/reference")
    g.add_argument("--reference-dir", type=Path, default=DEFAULT_REFERENCE_DIR)
    g.add_argument("--img", type=Path, default=Path("docs/img"), help="folder for the overlay plots")
    g.add_argument("--mcmc-steps", type=int, default=0,
                   help="random-walk Metropolis steps per chain for the independent check (0: skip)")
    args = p.parse_args(argv)
    if not args.compare and args.system is None:
        p.error("--system is required (or pass --compare)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare:
        return compare(args)
    args.out.mkdir(parents=True, exist_ok=True)
    npz_path = args.out / f"md_{args.system}.npz"
    json_path = args.out / f"md_{args.system}.json"
    if not args.overwrite and (npz_path.exists() or json_path.exists()):
        raise SystemExit(f"{npz_path} or {json_path} exists; pass --overwrite to replace it")

    energy = get_energy(args.system)
    config = MDConfig(
        timestep=args.timestep,
        friction=args.friction,
        n_equilibration_steps=args.n_equilibration_steps,
        n_pilot_steps=args.n_pilot_steps,
        report_interval=args.report_interval,
        thinning="auto" if args.thinning is None else args.thinning,
        thinning_factor=args.thinning_factor,
        thinning_observables=tuple(args.observables),
        seed=args.seed,
        platform=args.platform,
    )
    run = run_md(energy, args.n_samples, config, progress=not args.no_progress)

    positions = run.positions.reshape(run.n_samples, -1).numpy().astype(np.float32)  # (N, n*d) particle-major
    energies = run.energies.numpy().astype(np.float64)
    np.savez_compressed(npz_path, positions=positions, energies=energies)

    meta = run.metadata
    record = {
        "system": args.system,
        "n_samples": run.n_samples,
        "seed": args.seed,
        "kT": energy.kT,
        "temperature_K": meta["temperature_K"],
        "timestep_ps": config.timestep,
        "friction_per_ps": config.friction,
        "n_steps": meta["n_steps"],
        "n_equilibration_steps": meta["n_equilibration_steps"],
        "n_pilot_steps": meta["n_pilot_steps"],
        "n_sampling_steps": meta["n_sampling_steps"],
        "n_minimization_evaluations": meta["n_minimization_evaluations"],
        "n_energy_evaluations": run.n_energy_evaluations,
        "n_energy_queries": meta["n_energy_queries"],
        "thinning_steps": run.thinning,
        "thinning_factor": config.thinning_factor,
        "thinning_observables": list(config.thinning_observables),
        "autocorrelation_time_steps": run.autocorrelation_time,
        "pilot_autocorrelation_steps": meta["pilot_autocorrelation_steps"],
        "sample_autocorrelation_samples": meta["sample_autocorrelation"],
        "energy_mean": float(energies.mean()),
        "energy_std": float(energies.std()),
        "wall_time_s": run.wall_time,
        "platform": meta["platform"],
        "openmm_version": meta["openmm_version"],
        "idem_md_version": __version__,
        "energy": meta["energy"],
        "machine": {"cpu_count": os.cpu_count(), "processor": _platform.processor() or _platform.machine(),
                    "python": _platform.python_version()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + shlex.join(["scripts/generate_md_reference.py", *(sys.argv[1:] if argv is None else argv)]),
        "files": {"positions": "float32 (N, n_particles * spatial_dim), particle-major, centre of mass removed",
                  "energies": "float64 (N,), reduced units"},
    }
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {npz_path} ({npz_path.stat().st_size / 1e6:.1f} MB) and {json_path}: "
          f"{run.n_samples} samples, thinning {run.thinning} steps, E = {energies.mean():.3f} +- {energies.std():.3f}, "
          f"{run.wall_time:.0f} s")
    return 0


# ------------------------------------------------------------------ comparison
def load_reference(system: str, reference_dir: Path) -> np.ndarray:
    """External reference configurations ``(N, n, d)`` float64, centre of mass removed."""
    energy = get_energy(system)
    x = np.load(reference_dir / REFERENCE_FILES[system]).astype(np.float64)
    x = x.reshape(len(x), energy.n_particles, energy.spatial_dim)
    return x - x.mean(axis=1, keepdims=True)  # DW-4's file is not centred


def structure(system: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-configuration structural observables: mean pair distance, and for DW-n the
    number of pairs on the short side of the barrier (d < d0), which labels its modes."""
    from idem_md.metrics import interatomic_distances

    d = interatomic_distances(x)  # (N, P)
    out = {"mean_pair_distance": d.mean(1)}
    if system.startswith("dw"):
        out["n_short_pairs"] = (d < get_energy(system).d0).sum(1)
    return out


def _mean_se(x: np.ndarray, tau: float = 1.0) -> tuple[float, float]:
    """Mean and its standard error for a series with integrated autocorrelation time tau (>= 1)."""
    return float(x.mean()), float(x.std() * np.sqrt(max(tau, 1.0) / len(x)))


def compare_sets(system: str, md: np.ndarray, md_e: np.ndarray, ref: np.ndarray, ref_e: np.ndarray,
                 seed: int = 0) -> dict:
    """Energy and distance statistics of the MD and reference sets, with noise floors from
    disjoint halves (equal sizes, so every W2/TVD below compares N/2 with N/2)."""
    from idem_md.metrics import distance_tvd, energy_w2

    rng = np.random.default_rng(seed)
    h = min(len(md), len(ref)) // 2
    pm, pr = rng.permutation(len(md)), rng.permutation(len(ref))
    md_a, md_b, ref_a, ref_b = pm[:h], pm[h:2 * h], pr[:h], pr[h:2 * h]
    tau_md = integrated_autocorrelation_time(md_e)  # samples are in time order
    out = {
        "n_md": len(md), "n_reference": len(ref),
        "md_energy_tau_samples": tau_md,
        "md_energy_mean_se": _mean_se(md_e, tau_md), "reference_energy_mean_se": _mean_se(ref_e),
        "md_energy_std": float(md_e.std()), "reference_energy_std": float(ref_e.std()),
        "energy_w2_full": energy_w2(md_e, ref_e) if len(md_e) == len(ref_e) else None,
        "distance_tvd_full": distance_tvd(md, ref, bins=200),
        "energy_w2_half": {"md_vs_ref": energy_w2(md_e[md_a], ref_e[ref_a]),
                           "ref_vs_ref": energy_w2(ref_e[ref_a], ref_e[ref_b]),
                           "md_vs_md": energy_w2(md_e[md_a], md_e[md_b])},
        "distance_tvd_half": {"md_vs_ref": distance_tvd(md[md_a], ref[ref_a], bins=200),
                              "ref_vs_ref": distance_tvd(ref[ref_a], ref[ref_b], bins=200),
                              "md_vs_md": distance_tvd(md[md_a], md[md_b], bins=200)},
    }
    for name, (a, b) in {k: (v, structure(system, ref)[k]) for k, v in structure(system, md).items()}.items():
        if name == "n_short_pairs":
            n_pairs = md.shape[1] * (md.shape[1] - 1) // 2
            out["md_n_short_pairs_fractions"] = (np.bincount(a, minlength=n_pairs + 1) / len(a)).tolist()
            out["reference_n_short_pairs_fractions"] = (np.bincount(b, minlength=n_pairs + 1) / len(b)).tolist()
        else:
            out[f"md_{name}_mean_se"] = _mean_se(a, integrated_autocorrelation_time(a))
            out[f"reference_{name}_mean_se"] = _mean_se(b)
    return out


def rwm_check(system: str, starts: dict[str, np.ndarray], n_steps: int, seed: int = 0) -> dict:
    """Independent check with no time-step bias: random-walk Metropolis on the same energy,
    ``RWM_CHAINS[system]`` parallel chains, half started from each set in ``starts``.

    Returns, per start set, the chain-and-time averages over the last 80 % of the
    steps (recorded every 100 steps) of the energy, mean pair distance and (DW-n)
    n_short_pairs fractions, with standard errors from the spread of the
    per-chain averages (the chains are independent)."""
    energy = get_energy(system)
    gen = torch.Generator().manual_seed(seed)
    n_chains, step = RWM_CHAINS[system], RWM_STEP[system]
    per = n_chains // len(starts)
    x = torch.cat([torch.as_tensor(v[torch.randint(len(v), (per,), generator=gen).numpy()]) for v in starts.values()])
    e = energy.energy(x)
    records: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    accepted = 0.0
    for it in range(1, n_steps + 1):
        y = x + step * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        ey = energy.energy(y)
        acc = torch.rand(len(x), generator=gen, dtype=x.dtype).log() < -(ey - e) / energy.kT
        x = torch.where(acc[:, None, None], y, x)
        e = torch.where(acc, ey, e)
        accepted += float(acc.double().mean())
        if it % 100 == 0 and it > n_steps // 5:
            s = structure(system, x.numpy())
            records.append((e.numpy().copy(), s["mean_pair_distance"], s.get("n_short_pairs")))
    E = np.stack([r[0] for r in records], 1)  # (chains, T)
    D = np.stack([r[1] for r in records], 1)
    out: dict = {"n_chains": n_chains, "n_steps": n_steps, "proposal_std": step, "acceptance": accepted / n_steps}
    groups = {name: slice(i * per, (i + 1) * per) for i, name in enumerate(starts)}
    groups["all"] = slice(0, per * len(starts))
    for name, g in groups.items():
        ce, cd = E[g].mean(1), D[g].mean(1)
        res = {"energy_mean_se": (float(ce.mean()), float(ce.std() / np.sqrt(len(ce)))),
               "mean_pair_distance_mean_se": (float(cd.mean()), float(cd.std() / np.sqrt(len(cd))))}
        if records[0][2] is not None:
            ns = np.stack([r[2] for r in records], 1)[g]  # (chains, T)
            n_pairs = energy.n_particles * (energy.n_particles - 1) // 2
            frac = np.stack([(ns == k).mean(1) for k in range(n_pairs + 1)], 1)  # (chains, K)
            res["n_short_pairs_fractions"] = frac.mean(0).tolist()
            res["n_short_pairs_fractions_se"] = (frac.std(0) / np.sqrt(len(frac))).tolist()
        out[f"from_{name}"] = res
    return out


def plot_comparison(system: str, md: np.ndarray, md_e: np.ndarray, ref: np.ndarray, ref_e: np.ndarray,
                    path: Path, rwm: dict | None = None) -> None:
    """Energy (100 bins) and interatomic-distance (200 bins) histograms of the MD and
    reference sets; for DW-n also the mode populations (number of short pairs),
    with the random-walk Metropolis check when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from idem_md.metrics import interatomic_distances

    modes = system.startswith("dw")
    fig, axes = plt.subplots(1, 3 if modes else 2, figsize=(14 if modes else 10, 3.6))
    panels = [(md_e, ref_e, "energy (reduced units)", 100),
              (interatomic_distances(md).ravel(), interatomic_distances(ref).ravel(),
               "interatomic distance (reduced units)", 200)]
    for ax, (a, b, label, n_bins) in zip(axes, panels):
        bins = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), n_bins + 1)
        ax.hist(b, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color="C0", label="reference (MCMC)")
        ax.hist(a, bins=bins, density=True, histtype="step", color="C3", lw=1.2, label="MD (this repo)")
        ax.set_xlabel(label)
        ax.set_ylabel("density")
    axes[0].legend(frameon=False)
    if modes:
        ax = axes[2]
        k_md, k_ref = structure(system, md)["n_short_pairs"], structure(system, ref)["n_short_pairs"]
        ks = np.arange(max(k_md.max(), k_ref.max()) + 1)
        bars = [("reference (MCMC)", np.bincount(k_ref, minlength=len(ks)) / len(k_ref), None, "C0"),
                ("MD (this repo)", np.bincount(k_md, minlength=len(ks)) / len(k_md), None, "C3")]
        if rwm is not None:
            r = rwm["from_all"]
            bars.append(("random-walk Metropolis check", np.array(r["n_short_pairs_fractions"])[: len(ks)],
                         np.array(r["n_short_pairs_fractions_se"])[: len(ks)], "C2"))
        width = 0.8 / len(bars)
        for i, (label, frac, err, color) in enumerate(bars):
            ax.bar(ks + (i - (len(bars) - 1) / 2) * width, frac, width, yerr=err, color=color, alpha=0.8, label=label)
        ax.set_xlabel(f"pairs with d < d0 = {get_energy(system).d0:g} (mode label)")
        ax.set_ylabel("fraction of samples")
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(f"{system.upper()}: OpenMM Langevin MD vs external reference, {len(md)} vs {len(ref)} samples")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(args: argparse.Namespace) -> int:
    results = {}
    for system, reference_file in REFERENCE_FILES.items():
        npz = args.out / f"md_{system}.npz"
        if not npz.exists() or not (args.reference_dir / reference_file).exists():
            print(f"skipping {system}: {npz} or the reference file is missing")
            continue
        energy = get_energy(system)
        data = np.load(npz)
        md = data["positions"].astype(np.float64).reshape(-1, energy.n_particles, energy.spatial_dim)
        md_e = data["energies"].astype(np.float64)
        ref = load_reference(system, args.reference_dir)
        ref_e = energy.energy(torch.as_tensor(ref)).numpy()
        res = compare_sets(system, md, md_e, ref, ref_e, seed=args.seed)
        if args.mcmc_steps > 0:
            res["rwm_check"] = rwm_check(system, {"reference": ref, "md": md}, args.mcmc_steps, seed=args.seed)
        plot = args.img / f"md_vs_reference_{system}.png"
        plot_comparison(system, md, md_e, ref, ref_e, plot, rwm=res.get("rwm_check"))
        res["plot"] = str(plot)
        results[system] = res
        print(json.dumps({system: res}, indent=1))
    path = args.out / "md_comparison.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
