"""Reverse-SDE refill with and without CUDA graphs (``IDEMConfig.cuda_graphs``), side by side (not a test).

For each system, an untrained score network at the paper preset: milliseconds per network pass in the
reverse SDE (``--samples`` configurations, ``--steps`` steps) eagerly and replayed from CUDA graphs, their
ratio, and the largest difference between the two outputs of one network pass (float32). On a CPU only the
eager column is measured (graphs are CUDA only).

    python benchmarks/refill_graphs.py --device cuda --systems dw4 lj13 lj55 --samples 1000 --steps 100
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from idem_md import IDEMSampler, get_energy
from idem_md.config import preset
from idem_md.dem.sde import integrate_reverse_sde
from idem_md.nn.graphs import GraphedScore


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _refill_ms(sampler: IDEMSampler, score_fn, n: int, steps: int, repeats: int) -> float:
    """Median milliseconds per network pass over ``repeats`` refills of ``n`` samples."""
    times = []
    for r in range(repeats + 1):  # the first run warms up (and captures the graphs)
        x1 = sampler._prior(n)
        _sync(sampler.device)
        t0 = time.perf_counter()
        integrate_reverse_sde(score_fn, x1, sampler.schedule, steps=steps, mean_free=sampler.mean_free,
                              diffusion_scale=sampler.config.diffusion_scale, generator=sampler.generator)
        _sync(sampler.device)
        if r:
            times.append((time.perf_counter() - t0) / steps * 1e3)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--systems", nargs="+", default=["dw4", "lj13", "lj55"])
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, {args.samples} samples, {args.steps} steps, median of {args.repeats}")
    print("| system | eager ms/pass | graphs ms/pass | speed-up | max abs diff |\n| --- | --- | --- | --- | --- |")
    for system in args.systems:
        sampler = IDEMSampler(get_energy(system), preset(system), device=device)
        eager = _refill_ms(sampler, sampler.score, args.samples, args.steps, args.repeats)
        if device.type != "cuda":
            print(f"| {system} | {eager:.2f} | - (CPU) | - | - |", flush=True)
            continue
        graphed = GraphedScore(sampler.score, device)
        fast = _refill_ms(sampler, graphed, args.samples, args.steps, args.repeats)
        x, t = sampler._prior(args.samples), torch.full((args.samples,), 0.5, device=device)
        diff = (graphed(x, t) - sampler.score(x, t)).abs().max().item()
        mode = "eager fallback" if graphed.eager else f"{graphed.captures} capture(s)"
        print(f"| {system} | {eager:.2f} | {fast:.2f} ({mode}) | {eager / fast:.2f}x | {diff:.2e} |", flush=True)


if __name__ == "__main__":
    main()
