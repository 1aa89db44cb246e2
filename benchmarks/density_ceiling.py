"""The CNF route's ceiling (not a test): the density model fitted on *equilibrium* samples instead of iDEM's, so
that its importance ESS and NLL say how much of the gap to the paper's ESS is the flow-matching CNF itself and how
much is the sampler's samples it is fitted on.

    python benchmarks/density_ceiling.py --systems gmm40 dw4 --fit-samples 5000 --proposals 2000
    python benchmarks/density_ceiling.py --systems lj13 --fit-samples 5000 --proposals 500 --steps 1000

Fit data: GMM-40 exact samples (seed 1); DW-4 / LJ-13 / LJ-55 the first ``--fit-samples`` frames of this project's
long OpenMM MD run data/md_<system>.npz (never the external reference split). NLL: the next ``--nll-points`` frames
(held out; GMM-40: fresh exact samples). Density settings: :func:`idem_md.dem.density.default_density_config`
(``--steps`` overrides its flow-matching steps). Energy evaluations: one per proposal. Writes
docs/results/density_ceiling_<tag>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from idem_md.analysis.weights import effective_sample_size
from idem_md.dem.density import DensityModel, default_density_config
from idem_md.dem.sde import remove_mean
from idem_md.energies import get_energy

ROOT = Path(__file__).resolve().parents[1]


def equilibrium_samples(energy, n: int, offset: int) -> torch.Tensor:
    """``(n, n_particles, d)`` float64 equilibrium samples: exact for GMM-40, long MD frames otherwise."""
    if energy.name == "gmm40":
        return energy.sample(n, generator=torch.Generator().manual_seed(1 + offset)).reshape(n, 1, 2).double()
    x = np.load(ROOT / "data" / f"md_{energy.name}.npz")["positions"][offset:offset + n]
    if len(x) < n:
        raise SystemExit(f"data/md_{energy.name}.npz has {len(x) + offset} frames; ask for fewer samples")
    return remove_mean(torch.as_tensor(x).double().reshape(n, energy.n_particles, energy.spatial_dim))


def measure(system: str, fit_samples: int, proposals: int, nll_points: int, steps: int | None) -> dict:
    energy = get_energy(system)
    mean_free = energy.is_particle_system
    cfg = default_density_config(mean_free)
    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=steps)
    model = DensityModel(energy.n_particles, energy.spatial_dim, mean_free, cfg)
    data = equilibrium_samples(energy, fit_samples, 0)
    t0 = time.perf_counter()
    model.fit(data.float(), progress=False)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    x, lq = model.sample_with_log_prob(proposals, batch_size=min(proposals, 500),
                                       generator=torch.Generator().manual_seed(0))
    sample_s = time.perf_counter() - t1
    ok = torch.isfinite(lq) & torch.isfinite(x).flatten(1).all(1)
    log_p = torch.full((proposals,), float("nan"), dtype=torch.float64)
    log_p[ok] = energy.log_prob(x[ok].double()).double()
    good = ok & torch.isfinite(log_p)
    log_w = (log_p - lq.double())[good]
    held_out = equilibrium_samples(energy, nll_points, fit_samples)
    t2 = time.perf_counter()
    nll_lq = model.log_prob(held_out)
    nll_s = time.perf_counter() - t2
    finite = torch.isfinite(nll_lq)
    return {"system": system, "density_config": dataclasses.asdict(cfg), "fit_samples": fit_samples,
            "proposals": proposals, "failed_proposals": int((~good).sum()),
            "importance_ess": effective_sample_size(log_w) if len(log_w) else float("nan"),
            "log_Z_estimate": float(torch.logsumexp(log_w, 0) - np.log(proposals)) if len(log_w) else float("nan"),
            "nll_points": nll_points, "nll": float(-nll_lq[finite].mean()), "nll_failed": int((~finite).sum()),
            "energy_evaluations": int(ok.sum()), "fit_s": fit_s, "sample_s": sample_s, "nll_s": nll_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", nargs="+", default=["gmm40", "dw4"])
    p.add_argument("--fit-samples", type=int, default=5000)
    p.add_argument("--proposals", type=int, default=2000)
    p.add_argument("--nll-points", type=int, default=1000)
    p.add_argument("--steps", type=int, default=None, help="flow-matching steps (default: the density default)")
    p.add_argument("--tag", default=None, help="output name (default: the systems joined by '_')")
    args = p.parse_args(argv)
    out = {"command": "python " + " ".join(sys.argv), "torch_threads": torch.get_num_threads(), "rows": []}
    for system in args.systems:
        row = measure(system, args.fit_samples, args.proposals, args.nll_points, args.steps)
        print(json.dumps({k: v for k, v in row.items() if k != "density_config"}), flush=True)
        out["rows"].append(row)
    path = ROOT / "docs" / "results" / f"density_ceiling_{args.tag or '_'.join(args.systems)}.json"
    path.write_text(json.dumps(out, indent=2, default=float))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
