"""Sample quality against total energy evaluations (not a test): iDEM raw and corrected, OpenMM MD,
and plain MALA chains, on the same axis; writes docs/results/budget_<tag>.json and docs/img/budget_<tag>.png.

    python benchmarks/budget_curve.py --system dw4 --run runs/budget_dw4 --tag dw4 \\
        --idem-budgets 1e7 3e7 1e8 2e8 --baseline-budgets 1e5 3e5 1e6 3e6 1e7 3e7
    python benchmarks/budget_curve.py --system lj13 --run runs/lj13_cpu --tag lj13 --seed 0 --skip md mala \\
        --idem-budgets 96007696 --mala-steps 3000 --set batch_size=128 ...   # the CPU run's own --set values

Every energy evaluation of a point is counted: iDEM's training (the CLI run resumed with a larger
``--energy-budget`` for each point, so one run supplies every iDEM point), its correction (MALA, or
relax+MALA when the raw samples hold near-overlaps) and the energies of the evaluated samples; MD's
minimisation, equilibration, pilot and production steps (``run_md_with_budget``); MALA's every step.
Metrics: energy W2 against ../shared/reference's MCMC split (the external reference), distance W2
against the long MD set in data/ (the DW-4 split's distances are off equilibrium, docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from idem_md import IDEMSampler, get_energy
from idem_md.correct import BoltzmannTarget, CorrectionOptions, corrected_samples, mala
from idem_md.md import MDConfig, default_initial_positions, run_md_with_budget
from idem_md.metrics import distance_w2, energy_w2

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "reference"
SPLITS = {"dw4": "test_split_DW4.npy", "lj13": "test_split_LJ13.npy"}


@dataclass
class Point:
    """One method at one budget; W2 values in kT (energy) and the system's length unit (distance)."""

    method: str
    energy_evaluations: int
    n_samples: int
    energy_w2: float
    distance_w2: float
    wall_s: float


def references(energy) -> tuple[np.ndarray, np.ndarray]:
    """(energies of the external split, positions (N, n*d) of the long MD reference)."""
    split = np.load(SHARED / SPLITS[energy.name]).reshape(-1, energy.dim)
    e_split = energy.energy(torch.as_tensor(split, dtype=torch.float64)).numpy()
    md = np.load(ROOT / "data" / f"md_{energy.name}.npz")["positions"].reshape(-1, energy.dim)
    return e_split, md


def score(method: str, x: torch.Tensor, energy, refs, evals: int, wall: float, rng: np.random.Generator) -> Point:
    x = x.detach().double().reshape(len(x), -1)
    e = energy.energy(x).numpy()
    finite = np.isfinite(e)
    x, e = x.numpy()[finite], e[finite]
    e_split, md = refs
    m = min(len(x), 2000)
    md_sub = md[rng.choice(len(md), size=min(len(md), 2000), replace=False)]
    ew2 = energy_w2(e, e_split)
    dw2 = distance_w2(x[rng.choice(len(x), size=m, replace=False)], md_sub, energy.n_particles, energy.spatial_dim)
    return Point(method, int(evals + len(finite)), int(finite.sum()), float(ew2), float(dw2), wall)


def idem_points(args, energy, refs, rng) -> list[Point]:
    out = []
    for budget in sorted(args.idem_budgets):
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "idem_md", "train", "--system", args.system, "--out", str(args.run),
               "--outer-iterations", "100000", "--energy-budget", str(int(budget)), "--quiet", "--seed", str(args.seed)]
        for kv in args.set:
            cmd += ["--set", kv]
        subprocess.run(cmd, check=True)
        s = IDEMSampler.load(args.run / "checkpoint.pt", device="cpu")
        train_evals = s.energy_evaluations
        raw = s.sample(args.n, progress=False, compute_energies=False)
        wall = time.perf_counter() - t0
        out.append(score("idem_raw", raw.positions, energy, refs, train_evals, wall, rng))
        method = "relax+mala" if args.system.startswith("lj") else "mala"
        opts = CorrectionOptions(method=method, mala_steps=args.mala_steps, relax_steps=args.relax_steps, seed=0)
        t1 = time.perf_counter()
        corr = corrected_samples(s, args.n, opts, progress=False)
        spent = corr.metadata["correction"]["n_energy_evaluations"]
        out.append(score(f"idem+{method}", corr.positions, energy, refs, train_evals + spent,
                         wall + time.perf_counter() - t1, rng))
        print(out[-2], out[-1], sep="\n", flush=True)
    return out


def md_points(args, energy, refs, rng) -> list[Point]:
    out = []
    for budget in sorted(args.baseline_budgets):
        t0 = time.perf_counter()
        cfg = MDConfig(n_chains=1, timestep=args.md_timestep, seed=0)
        try:
            run = run_md_with_budget(energy, int(budget), cfg, progress=False)
        except ValueError as exc:  # the budget cannot pay for burn-in: no point
            print(f"md {budget:.0e}: {exc}", flush=True)
            continue
        out.append(score("openmm_md", torch.as_tensor(run.positions), energy, refs, run.n_energy_evaluations,
                         time.perf_counter() - t0, rng))
        print(out[-1], flush=True)
    return out


def mala_points(args, energy, refs, rng) -> list[Point]:
    """MALA chains from the MD starting geometry (slightly perturbed), final states as samples."""
    out = []
    base = default_initial_positions(energy).double().reshape(1, energy.n_particles, energy.spatial_dim)
    for budget in sorted(args.baseline_budgets):
        steps = int(budget) // args.mala_chains
        if steps < 2:
            continue
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(0)
        x0 = base.repeat(args.mala_chains, 1, 1) + 0.05 * torch.randn(args.mala_chains, *base.shape[1:], generator=g,
                                                                       dtype=torch.float64)
        target = BoltzmannTarget(energy)
        res = mala(target, x0, n_steps=steps, warmup=steps // 2, mean_free=target.mean_free, generator=g)
        out.append(score("mala_chains", res.positions, energy, refs, target.n_evaluations,
                         time.perf_counter() - t0, rng))
        print(out[-1], flush=True)
    return out


def plot(points: list[Point], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in zip(axes, ("energy_w2", "distance_w2"), ("energy W2 vs MCMC split", "distance W2 vs long MD")):
        for method in dict.fromkeys(p.method for p in points):
            pts = sorted((p for p in points if p.method == method), key=lambda p: p.energy_evaluations)
            ax.plot([p.energy_evaluations for p in pts], [getattr(p, key) for p in pts], "o-", label=method)
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("total energy evaluations"), ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--system", required=True, choices=sorted(SPLITS))
    p.add_argument("--run", type=Path, required=True, help="iDEM run directory (created or resumed)")
    p.add_argument("--tag", required=True)
    p.add_argument("--idem-budgets", type=float, nargs="*", default=[])
    p.add_argument("--baseline-budgets", type=float, nargs="*", default=[])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="iDEM config override")
    p.add_argument("-n", type=int, default=1000, help="iDEM samples per point")
    p.add_argument("--mala-steps", type=int, default=100, help="MALA steps of the iDEM correction")
    p.add_argument("--relax-steps", type=int, default=100, help="Langevin steps of relax (relax+mala, LJ systems)")
    p.add_argument("--seed", type=int, default=1, help="training seed of the iDEM run")
    p.add_argument("--mala-chains", type=int, default=1000)
    p.add_argument("--md-timestep", type=float, default=0.005)
    p.add_argument("--skip", nargs="*", default=[], choices=["idem", "md", "mala"])
    args = p.parse_args(argv)
    energy = get_energy(args.system)
    refs = references(energy)
    rng = np.random.default_rng(0)
    out_json = ROOT / "docs" / "results" / f"budget_{args.tag}.json"
    previous = json.loads(out_json.read_text()) if out_json.is_file() else {}
    old = previous.get("points", [])
    commands = previous.get("commands", [previous["command"]] if "command" in previous else [])
    points: list[Point] = []
    for name, fn in (("idem", idem_points), ("md", md_points), ("mala", mala_points)):
        if name not in args.skip:
            points += fn(args, energy, refs, rng)
    done = {p.method for p in points}
    points += [Point(**d) for d in old if d["method"] not in done]  # keep the methods not rerun
    machine = (f"{platform.node()} ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
               f"{torch.get_num_threads()} torch threads")
    payload = {"commands": [*commands, "python " + " ".join(sys.argv)], "machine": previous.get("machine", machine),
               "points": [asdict(p) for p in points]}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(payload, indent=2))
    plot(points, ROOT / "docs" / "img" / f"budget_{args.tag}.png", f"{args.system}: quality vs energy evaluations")
    print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
