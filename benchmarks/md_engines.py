"""Time per integrator step of the MD engines of idem_md.md on DW-4 and LJ-13.

    python benchmarks/md_engines.py [--steps 4000]

Prints one row per (system, engine, chains): wall seconds per step and per configuration-step
(fixed thinning, no minimisation, no pilot; best of 2). Results in docs/md_baselines.md.
"""

from __future__ import annotations

import argparse
import time

from idem_md import get_energy
from idem_md.md import MDConfig, run_md


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4000)
    args = p.parse_args()
    print("| system | engine | chains | us / step | us / configuration-step |")
    print("| --- | --- | --- | --- | --- |")
    for name in ("dw4", "lj13"):
        for engine, chains in (("openmm", 1), ("torch", 1), ("torch", 256), ("ase", 1)):
            steps = args.steps if engine != "ase" else args.steps // 4
            cfg = MDConfig(n_equilibration_steps=0, thinning=steps, minimize=False, engine=engine, n_chains=chains)
            best = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                run_md(get_energy(name), chains, cfg, progress=False)
                best = min(best, time.perf_counter() - t0)
            per_step = 1e6 * best / steps
            print(f"| {name} | {engine} | {chains} | {per_step:.1f} | {per_step / chains:.2f} |")


if __name__ == "__main__":
    main()
