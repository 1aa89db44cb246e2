"""Seconds per outer iteration at the paper preset and the CPU preset, side by side in one run (not a test).

Trains a fresh sampler for ``--outer`` outer iterations at each preset and prints the wall time of each
iteration (``history[i].wall_time_s``: inner steps + reverse-SDE refill) and its median, together
with the energy evaluations per iteration. Run it with nothing else on the machine; the thread count is
the process's default unless ``--threads`` is given.

    python benchmarks/outer_seconds.py --systems dw4 lj13 --outer 2 --paper-outer 1 --json docs/results/outer_seconds.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from idem_md import IDEMSampler, get_energy
from idem_md.config import preset


def time_preset(system: str, cpu: bool, outer: int, seed: int) -> dict:
    energy = get_energy(system)
    config = preset(system, cpu=cpu, seed=seed)
    sampler = IDEMSampler(energy, config)
    t0 = time.perf_counter()
    history = sampler.fit(outer, progress=False)
    total = time.perf_counter() - t0
    seconds = [r.wall_time_s for r in history]
    evals = [b.energy_evaluations - a for a, b in
             zip([0] + [r.energy_evaluations for r in history[:-1]], history)]
    return dict(system=system, preset="cpu" if cpu else "paper", outer_iterations=len(history),
                seconds_per_outer=seconds, median_s=statistics.median(seconds), total_s=total,
                evaluations_per_outer=evals, sde_steps=config.sde_steps, sde_method=config.sde_method,
                inner_steps=config.inner_steps, batch_size=config.batch_size, num_mc_samples=config.num_mc_samples,
                samples_per_outer=config.samples_per_outer, network_options=config.network_options)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", default=["dw4", "lj13"])
    p.add_argument("--outer", type=int, default=2, help="outer iterations timed at the CPU preset")
    p.add_argument("--paper-outer", type=int, default=1, help="outer iterations timed at the paper preset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    for system in args.systems:
        for cpu in (False, True):
            row = time_preset(system, cpu, args.outer if cpu else args.paper_outer, args.seed)
            rows.append(row)
            print(f"| {system} | {row['preset']} | {row['median_s']:.1f} s | "
                  f"{', '.join(f'{s:.1f}' for s in row['seconds_per_outer'])} | "
                  f"{statistics.median(row['evaluations_per_outer']):.3g} evals/outer |", flush=True)
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(rows=rows, load_end=os.getloadavg()[0], torch=torch.__version__), fh, indent=1)


if __name__ == "__main__":
    main()
