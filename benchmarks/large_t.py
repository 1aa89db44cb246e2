"""The large-t behaviour of a trained score (not a test): how often its Jacobian breaks the bound
``eig >= -1/h(t)`` that every true noised score obeys, with sample quality beside it, for one or more runs.

    python benchmarks/large_t.py runs/gmm40_s0 runs/gmm40_skip_s0 --tag gmm40_skip

Points: forward-noised reference samples at each t (GMM-40: exact samples; particle systems: data/md_<system>.npz),
in working coordinates. Writes docs/results/large_t_<tag>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from idem_md import IDEMSampler, evaluate
from idem_md.dem.diagnostics import jacobian_bound_violation
from idem_md.dem.sde import remove_mean
from idem_md.io import Samples

ROOT = Path(__file__).resolve().parents[1]
TIMES = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0)


def reference(energy, n: int) -> torch.Tensor:
    if energy.name == "gmm40":
        return energy.sample(n, generator=torch.Generator().manual_seed(7)).reshape(n, 1, 2).double()
    x = np.load(ROOT / "data" / f"md_{energy.name}.npz")["positions"][:n]
    return remove_mean(torch.as_tensor(x).double().reshape(len(x), energy.n_particles, energy.spatial_dim))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--tag", required=True)
    p.add_argument("--points", type=int, default=300)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--refill-integrator", action="store_true", help="sample every run with its training refill's "
                   "integrator (as runs from before the Heun sampling default do), for like-for-like comparisons")
    args = p.parse_args(argv)
    out = {"command": "python " + " ".join(sys.argv), "runs": {}}
    for run in args.runs:
        s = IDEMSampler.load(run / "checkpoint.pt", device="cpu")
        if args.refill_integrator:
            s.config = s.config.with_refill_sampling()
        g = torch.Generator().manual_seed(0)
        x0 = reference(s.energy, args.points) / s.config.coordinate_scale
        rows = []
        for t in TIMES:
            h = float(s.schedule.h(torch.tensor(t, dtype=torch.float64)))
            xt = x0 + h**0.5 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
            xt = remove_mean(xt) if s.mean_free else xt
            check = jacobian_bound_violation(lambda y, tt: s.network(y.float(), tt.float()).double(), xt, t,
                                             s.schedule, mean_free=s.mean_free)
            rows.append(check.__dict__)
        samples = s.sample(args.samples, progress=False)
        ref = Samples(reference(s.energy, max(args.samples, 1000)).float() * 1.0, None, {"system": s.energy.name})
        rep = evaluate(samples, s.energy, ref, n_batches=2, batch_size=min(1000, len(samples)))
        out["runs"][str(run)] = {
            "gaussian_skip_sigma": s.config.gaussian_skip_sigma, "outer_iterations": s.outer_iteration,
            "sampling_integrator": s.config.sampling_integrator(), "jacobian_bound": rows, "n_diverged": samples.metadata.get("n_diverged", 0),
            "metrics": {k: v.mean for k, v in rep.metrics.items()}}
        print(run, json.dumps(out["runs"][str(run)], default=float), flush=True)
    (ROOT / "docs" / "results" / f"large_t_{args.tag}.json").write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
