"""Speed benchmark of iDEM's pieces at the paper's batch and K (not a test).

Prints a markdown table per system: estimator energy evaluations/s, training
steps/s (estimator + network forward/backward + Adam), the time split of one
outer iteration (100 inner steps + reverse-SDE refill), and reverse-SDE samples/s.
With --compare-autograd it also times one LJ-13 training step with two pure-torch
autograd energies, side by side with the default fast path: our own reference
(unordered pairs ``i < j``, forces by autograd) and the formulation of the public
iDEM code (bgflow's ``distance_vectors``: the full ``(n, n)`` displacement tensor
with the diagonal masked out, ordered pairs, forces by autograd), which is the
"plain torch with autograd" baseline of issue #4.

    python benchmarks/bench_training.py --systems dw4 lj13 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from idem_md import IDEMSampler, get_energy
from idem_md.energies import Energy


class AutogradEnergy(Energy):
    """The reference path: torch energy, forces by a second autograd pass."""

    def __init__(self, inner: Energy):
        super().__init__(inner.n_particles, inner.spatial_dim, inner.kT, inner.name)
        self.inner = inner
        self.translation_invariant = inner.translation_invariant

    def _energy(self, x):
        return self.inner._energy(x)

    def identity(self):
        return self.inner.identity()


class IDEMStyleLennardJones(Energy):
    """LJ-n as the public iDEM code writes it (bgflow formulation), forces by autograd.

    Same function as ``get_energy("lj13", softening=0)``: ordered pairs with energy
    factor 1 equal unordered pairs with pair factor 2; oscillator ``0.5 sum |x - xbar|^2``.
    """

    translation_invariant = True

    def __init__(self, n_particles: int = 13):
        super().__init__(n_particles, 3, 1.0, f"lj{n_particles}")
        self.reference = get_energy(f"lj{n_particles}", softening=0.0)

    def _energy(self, x):
        n = x.shape[1]
        r = x.unsqueeze(-2) - x.unsqueeze(-3)  # (B, n, n, 3)
        r = r[:, torch.eye(n, dtype=torch.bool, device=x.device).logical_not()].view(-1, n, n - 1, 3)
        d = r.pow(2).sum(-1).sqrt().view(x.shape[0], -1)  # (B, n (n - 1))
        lj = ((1.0 / d) ** 12 - 2.0 * (1.0 / d) ** 6).sum(-1)
        centred = x - x.mean(1, keepdim=True)
        return lj + 0.5 * centred.pow(2).sum((-2, -1))

    def identity(self):
        return self.reference.identity()


def _median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_system(name: str, repeats: int, device: str, sde_samples: int, energy: Energy | None = None) -> dict:
    energy = energy if energy is not None else get_energy(name)
    sampler = IDEMSampler(energy, device=device)
    cfg = sampler.config
    sampler.buffer.add(sampler._prior(cfg.samples_per_outer))
    B, K = cfg.batch_size, cfg.num_mc_samples
    g = sampler.generator

    from idem_md.dem import estimate_dem_score

    x0 = sampler.buffer.sample(B, generator=g)
    t = torch.rand(B, generator=g, device=sampler.device)
    x_t = x0 + sampler.schedule.h(t).sqrt()[:, None, None] * torch.randn(x0.shape, generator=g, device=sampler.device)

    def estimator():
        estimate_dem_score(energy, x_t, t, sampler.schedule, K, coordinate_scale=cfg.coordinate_scale,
                           score_clip=cfg.score_clip, chunk_size=cfg.estimator_chunk_size, generator=g)

    def network_step():
        pred = sampler.network(x_t, t)
        loss = pred.pow(2).mean()
        sampler.optimizer.zero_grad()
        loss.backward()
        sampler.optimizer.step()

    t_est = _median_time(estimator, repeats)
    t_net = _median_time(network_step, repeats)
    t_step = _median_time(sampler._train_step, repeats)
    n_sde = min(sde_samples, cfg.samples_per_outer)
    t_sde = _median_time(lambda: sampler._generate(n_sde), max(1, repeats // 3), warmup=0)
    t_sde_outer = t_sde * cfg.samples_per_outer / n_sde
    t_outer = cfg.inner_steps * t_step + t_sde_outer
    return {
        "system": name, "batch": B, "K": K,
        "estimator_configs_per_s": B * K / t_est,
        "estimator_s": t_est, "network_s": t_net, "train_step_s": t_step,
        "train_steps_per_s": 1.0 / t_step,
        "sde_samples_per_s": n_sde / t_sde, "sde_steps": cfg.sde_steps,
        "outer_iteration_s": t_outer,
        "outer_split": {"estimator": cfg.inner_steps * t_est / t_outer, "network": cfg.inner_steps * t_net / t_outer,
                        "sde_refill": t_sde_outer / t_outer},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", default=["dw4", "lj13"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sde-samples", type=int, default=200, help="samples per timed reverse-SDE run (scaled up)")
    p.add_argument("--compare-autograd", action="store_true", help="LJ-13 training step: autograd vs fast path")
    args = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {args.device}, torch {torch.__version__}\n")
    print("| system | batch | K | estimator configs/s | estimator s | network fwd+bwd s | train steps/s | "
          "SDE samples/s (steps) | outer iteration s | split est/net/SDE |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.systems:
        r = bench_system(name, args.repeats, args.device, args.sde_samples)
        sp = r["outer_split"]
        print(f"| {name} | {r['batch']} | {r['K']} | {r['estimator_configs_per_s']:,.0f} | {r['estimator_s']:.3f} | "
              f"{r['network_s']:.3f} | {r['train_steps_per_s']:.2f} | {r['sde_samples_per_s']:.1f} ({r['sde_steps']}) | "
              f"{r['outer_iteration_s']:.1f} | {sp['estimator']:.0%}/{sp['network']:.0%}/{sp['sde_refill']:.0%} |",
              flush=True)
    if args.compare_autograd:
        fast = bench_system("lj13", args.repeats, args.device, 10)
        ours = bench_system("lj13", max(1, args.repeats // 2), args.device, 10,
                            energy=AutogradEnergy(get_energy("lj13", backend="torch")))
        idem = bench_system("lj13", max(1, args.repeats // 2), args.device, 10, energy=IDEMStyleLennardJones(13))
        print(f"\nLJ-13 training step (batch {fast['batch']}, K {fast['K']}), medians in one run:\n"
              f"  fast path (numba kernels)                 {fast['train_step_s']:.3f} s\n"
              f"  our torch energy, autograd forces         {ours['train_step_s']:.3f} s "
              f"({ours['train_step_s'] / fast['train_step_s']:.1f}x slower)\n"
              f"  iDEM-code torch energy, autograd forces   {idem['train_step_s']:.3f} s "
              f"({idem['train_step_s'] / fast['train_step_s']:.1f}x slower)")


if __name__ == "__main__":
    main()
