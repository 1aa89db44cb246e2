"""LJ-55 from a trained run (not a test): raw reverse-SDE samples, then relax, then MALA from the relaxed ones,
all from ONE draw (sampling LJ-55 on a CPU is the expensive part), each evaluated against data/md_lj55.npz, beside
OpenMM MD with ``--md-budget`` energy evaluations (0: none); writes docs/results/lj55_<tag>.json and the energy
histogram docs/results/lj55_<tag>_energy.png (every row, the MD row and the long-MD reference).

    python benchmarks/lj55_eval.py runs/lj55_cpu --tag cpu -n 400 --mala-steps 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from idem_md import IDEMSampler, evaluate
from idem_md.correct import BoltzmannTarget, mala, relax
from idem_md.io import Samples
from idem_md.md import MDConfig, run_md_with_budget
from idem_md.plots import energy_histogram, save_figure

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("coordinate_w2", "geometric_w2", "energy_w2", "distance_w2", "distance_tvd")


def row(x: torch.Tensor, energy, ref: Samples, evals: int, wall: float, kept: dict | None = None) -> dict:
    e = energy.energy(x.double())
    ok = torch.isfinite(e)
    s = Samples(x[ok].float(), e[ok].float(), {"system": energy.name})
    if kept is not None:
        kept[len(kept)] = e[ok].numpy()
    rep = evaluate(s, energy, ref, n_batches=1, batch_size=len(s), geometric_max_samples=100)
    return {"n": int(ok.sum()), "energy_evaluations": evals, "wall_s": wall, "energy_max": float(e[ok].max()),
            "energy_median": float(e[ok].median()),
            **{k: rep.metrics[k].mean for k in KEYS if k in rep.metrics}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--tag", required=True)
    p.add_argument("-n", type=int, default=400)
    p.add_argument("--relax-steps", type=int, default=100)
    p.add_argument("--mala-steps", type=int, default=1000)
    p.add_argument("--md-budget", type=int, default=1_000_000, help="energy evaluations of the MD row (0: no MD)")
    p.add_argument("--refill-integrator", action="store_true", help="sample with the training refill's integrator "
                   "instead of the sampling default (Heun on the edm grid)")
    args = p.parse_args(argv)
    s = IDEMSampler.load(args.run / "checkpoint.pt", device="cpu")
    if args.refill_integrator:
        s.config = s.config.with_refill_sampling()
    energy = s.energy
    ref = Samples.from_array(np.load(ROOT / "data" / "md_lj55.npz")["positions"], 55, 3, energy=energy, centre=True)
    train = s.energy_evaluations
    out = {"command": "python " + " ".join(sys.argv), "outer_iterations": s.outer_iteration,
           "training_energy_evaluations": train, "rows": {}}
    energies: dict = {}  # row index -> finite energies, for the histogram
    t0 = time.perf_counter()
    x = s.sample(args.n, progress=False, compute_energies=False).positions.double()
    out["rows"]["raw"] = row(x, energy, ref, train + args.n, time.perf_counter() - t0, energies)
    print("raw", out["rows"]["raw"], flush=True)
    g = torch.Generator().manual_seed(0)
    t1 = time.perf_counter()
    r = relax(energy, x, langevin_steps=args.relax_steps, generator=g)
    out["rows"]["relax"] = row(r.positions, energy, ref, train + r.n_energy_evaluations + args.n,
                               time.perf_counter() - t1, energies)
    print("relax", out["rows"]["relax"], flush=True)
    target = BoltzmannTarget(energy)
    m = mala(target, r.positions, n_steps=args.mala_steps, warmup=args.mala_steps // 2, mean_free=True, generator=g)
    spent = r.n_energy_evaluations + target.n_evaluations
    out["rows"]["relax+mala"] = {**row(m.positions, energy, ref, train + spent + args.n, time.perf_counter() - t1,
                                       energies), "acceptance": m.acceptance_rate}
    print("relax+mala", out["rows"]["relax+mala"], flush=True)
    hist = {f"iDEM {k}": energies[i] for i, (k, v) in enumerate(out["rows"].items())}
    if args.md_budget:
        t2 = time.perf_counter()
        run = run_md_with_budget(energy, args.md_budget, MDConfig(n_chains=1, timestep=0.005, seed=0), progress=False)
        md = run.to_samples()
        rep = evaluate(md, energy, ref, n_batches=1, batch_size=len(md), geometric_max_samples=100)
        out["rows"]["openmm_md"] = {"n": len(md), "energy_evaluations": run.n_energy_evaluations,
                                    "wall_s": time.perf_counter() - t2, "energy_max": float(md.energies.max()),
                                    "energy_median": float(md.energies.median()),
                                    **{k: rep.metrics[k].mean for k in KEYS if k in rep.metrics}}
        print("openmm_md", out["rows"]["openmm_md"], flush=True)
        hist[f"OpenMM MD, {run.n_energy_evaluations:.1e} evaluations"] = md.energies.numpy()
    hist["long MD reference"] = e_ref = ref.energies.numpy()
    stem = ROOT / "docs" / "results" / f"lj55_{args.tag}"
    window = (float(e_ref.min()) - 20.0, float(e_ref.max()) + 100.0)  # the legend counts what falls outside
    save_figure(energy_histogram(hist, bins=60, range=window), stem.with_name(stem.name + "_energy.png"), overwrite=True)
    path = stem.with_suffix(".json")
    path.write_text(json.dumps(out, indent=2, default=float))
    print(f"wrote {path} and {stem.name}_energy.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
