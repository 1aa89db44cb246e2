"""Corrected samples of a trained run (not a test): raw / relax / MALA / SMC, each evaluated against the
references, with every energy evaluation counted; writes docs/results/correction_<tag>.json.

    python benchmarks/correction.py runs/dw4_seed1 --tag dw4_seed1 -n 2000
    python benchmarks/correction.py runs/gmm40_s0 --tag gmm40_s0 -n 20000 --methods none smc
    python benchmarks/correction.py runs/lj13_cpu --tag lj13_cpu -n 2000 --methods none relax smc

SMC (the default --methods include it) fits the run's density model first when it has none and saves it
into the run (idem-md sample --correct smc does the same). References: ../shared/reference's MCMC split
(DW-4, LJ-13), the long MD sets in data/ (DW-4, LJ-13), exact samples (GMM-40).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from idem_md import IDEMSampler, evaluate
from idem_md.correct import CorrectionOptions, corrected_samples
from idem_md.io import Samples
from idem_md.metrics import mode_counts

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results"
SHARED = ROOT.parent / "shared" / "reference"
SPLITS = {"dw4": "test_split_DW4.npy", "lj13": "test_split_LJ13.npy"}


def references(energy) -> dict[str, Samples]:
    name = energy.name
    out: dict[str, Samples] = {}
    if name == "gmm40":
        n = 10000
        x = energy.sample(n, generator=torch.Generator().manual_seed(12345)).reshape(n, 1, 2)
        out["exact"] = Samples(x, energy.energy(x), {"system": name})
        return out
    if name in SPLITS and (SHARED / SPLITS[name]).is_file():
        out["mcmc_split"] = Samples.from_array(np.load(SHARED / SPLITS[name]), energy.n_particles,
                                               energy.spatial_dim, energy=energy, centre=True)
    md = ROOT / "data" / f"md_{name}.npz"
    if md.is_file():
        out["long_md"] = Samples.from_array(np.load(md)["positions"], energy.n_particles, energy.spatial_dim,
                                            energy=energy, centre=True)
    return out


def summarise(samples: Samples, energy, refs: dict[str, Samples]) -> dict:
    row: dict = {"n": len(samples), "energy_max": float(samples.energies.max()),
                 "energy_median": float(samples.energies.median())}
    for label, ref in refs.items():
        rep = evaluate(samples, energy, ref, n_batches=min(5, max(1, len(samples) // 1000)),
                       batch_size=min(1000, len(samples)), geometric_max_samples=100)
        row[label] = {k: {"mean": v.mean, "std": v.std} for k, v in rep.metrics.items()
                      if k in ("energy_w2", "distance_w2", "coordinate_w2", "geometric_w2", "mode_coverage")}
        row[label]["reference_energy_max"] = float(ref.energies.max())
    if energy.name == "gmm40":
        c = mode_counts(samples.positions.reshape(len(samples), -1), energy.means, energy.std)
        p = c / c.sum()
        row["mode_tv_from_uniform"] = float(0.5 * np.abs(p - 1.0 / energy.n_modes).sum())
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--tag", required=True)
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--methods", nargs="+", default=["none", "relax", "mala", "smc"])
    p.add_argument("--mala-steps", type=int, default=50)
    p.add_argument("--relax-steps", type=int, default=100)
    p.add_argument("--density-samples", type=int, default=5000)
    p.add_argument("--density-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ckpt = args.run / "checkpoint.pt"
    sampler = IDEMSampler.load(ckpt, device="cpu")
    energy = sampler.energy
    refs = references(energy)
    training = {k: v for k, v in sampler.counters.items()}
    result = {"run": str(args.run), "system": energy.name, "outer_iterations": sampler.outer_iteration,
              "training_energy_evaluations": int(training["estimator"] + training["sampling"]),
              "command": "python " + " ".join(sys.argv),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
              "methods": {}}
    if "smc" in args.methods and sampler.density is None:
        t0 = time.perf_counter()
        sampler.fit_density(args.density_samples, steps=args.density_steps, progress=False)
        sampler.save(ckpt)
        result["density_fit_wall_s"] = time.perf_counter() - t0
        result["density_fit_samples"] = args.density_samples
    for method in args.methods:
        before = dict(sampler.counters)
        t0 = time.perf_counter()
        opts = CorrectionOptions(method=method, mala_steps=args.mala_steps, relax_steps=args.relax_steps,
                                 seed=args.seed)
        s = corrected_samples(sampler, args.n, opts, progress=False)
        wall = time.perf_counter() - t0
        if s.energies is None:
            s = Samples(s.positions, energy.energy(s.positions.double()).to(s.positions.dtype), s.metadata)
        spent = {k: sampler.counters[k] - before.get(k, 0) for k in sampler.counters}
        row = summarise(s, energy, refs)
        info = dict(s.metadata.get("correction") or {})
        for k in ("log_weights", "ancestors"):
            info.pop(k, None)
        row.update(wall_s=wall, energy_evaluations_this_step=spent, correction=info,
                   total_energy_evaluations=result["training_energy_evaluations"] + int(sum(spent.values())),
                   n_diverged=s.metadata.get(
                       "n_diverged", info.get("n_diverged", 0)))
        result["methods"][method] = row
        print(method, json.dumps({k: row[k] for k in row if k not in ("correction",)}, default=float), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"correction_{args.tag}.json").write_text(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
