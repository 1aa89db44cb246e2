"""Throughput of energy + forces for alanine dipeptide: batched torch force field vs one OpenMM Context.

Not a test. Prints a markdown table of configurations per second (median of repeats after a
warm-up) for :class:`idem_md.energies.forcefield.ForceFieldEnergy` at several batch sizes, with
its two backends (torch float64 with autograd forces; the fused numba kernel with analytic forces), and for :class:`idem_md.energies.openmm_bridge.OpenMMEnergy`
(one Context, ``setPositions`` + ``getState`` per configuration) on the CPU and Reference
platforms. Configurations: the PDB geometry plus 0.01 nm Gaussian noise.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_forcefield.py
    python benchmarks/bench_forcefield.py --device cuda     # torch rows on a GPU

The machine may be shared: the min-max column is the noise of that run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def _rate(fn, batch: int, repeats: int, min_time: float = 0.3) -> tuple[float, float, float]:
    """Median, min, max configurations per second of ``fn()`` evaluating ``batch`` configurations."""
    fn()  # warm-up
    rates = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        rates.append(n * batch / dt)
    return statistics.median(rates), min(rates), max(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", default="1,64,1024,8192")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    from idem_md.energies.alanine import AlanineDipeptide, alanine_dipeptide_system
    from idem_md.energies.openmm_bridge import OpenMMEnergy, available_platforms

    x0 = AlanineDipeptide().initial_positions().to(args.device)
    g = torch.Generator(device=args.device).manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {args.device}")
    print("| evaluator | batch | configurations/s (median) | min-max |")
    print("|---|---|---|---|")
    backends = ["torch"] + (["numba"] if args.device == "cpu" else [])
    for backend in backends:
        ff = AlanineDipeptide(backend=backend).to(args.device)
        label = "torch float64, autograd" if backend == "torch" else "numba kernel, analytic forces"
        for b in [int(s) for s in args.batches.split(",")]:
            x = x0 + 0.01 * torch.randn(b, 22, 3, generator=g, device=args.device, dtype=torch.float64)

            def run():
                ff.energy_and_forces(x)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()

            med, lo, hi = _rate(run, b, args.repeats)
            print(f"| ForceFieldEnergy ({label}) | {b} | {med:,.0f} | {lo:,.0f}-{hi:,.0f} |")
    x = x0.cpu() + 0.01 * torch.randn(64, 22, 3, dtype=torch.float64)
    for name in ("CPU", "Reference"):
        if name not in available_platforms():
            continue
        omm = OpenMMEnergy(alanine_dipeptide_system(), temperature=300.0, platform=name)
        med, lo, hi = _rate(lambda: omm.energy_and_forces(x), 64, args.repeats)
        print(f"| OpenMMEnergy, one Context, {name} platform | 64 (looped) | {med:,.0f} | {lo:,.0f}-{hi:,.0f} |")


if __name__ == "__main__":
    main()
