"""Sample quality against score evaluations for the reverse-SDE and probability-flow integrators (not a test).

GMM-40 with the EXACT noised score (``GaussianMixture.noised_score``: the mixture with variance ``std^2 + h``), so the
only error is the integrator's: for every method x time grid x step count, ``--n`` trajectories from the prior are
compared with ``--n`` exact samples by energy W2, mode total variation (``0.5 * (sum_k |f_k - 1/40| + f_outside)``,
f_k the fraction nearest mode k within its 1e-4 chi^2 radius), the error of the mean energy (exact mean from 1e6
samples), and coordinate W2 on the first ``--n-w2`` of them (exact OT is quadratic in memory). The floor is the same
metrics between two independent exact sample sets of that size. For the ODE also the strong error: the mean distance
of each end point to that of the same prior point under 2000 Heun steps on the EDM grid (reduced length).
Settings are the gmm40 preset's (sigma_min 1e-5, sigma_max 1, coordinate_scale 50, eta 1).

With ``--checkpoint RUN/checkpoint.pt --reference FILE.npy`` the reverse-SDE sweep runs with that trained sampler's
network (its own schedule and eta) and compares ``--n`` samples with the reference rows by energy W2 and
interatomic-distance W2 (1D, quantile matching; DW-4: ../shared/reference/test_split_DW4.npy, centred here):

    idem-md train --system dw4 --out /tmp/h3_dw4 --outer-iterations 5
    python benchmarks/integrators.py --checkpoint /tmp/h3_dw4/checkpoint.pt \
        --reference ../shared/reference/test_split_DW4.npy --n 2000 --steps 20 50 100 200 1000 \
        --out docs/results/integrators_dw4.json

    OMP_NUM_THREADS=1 python benchmarks/integrators.py --n 10000 --n-w2 4000 --seeds 1 --out docs/results/integrators_gmm40.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from idem_md import get_energy
from idem_md.config import preset
from idem_md.dem import GeometricNoiseSchedule, sample_prior
from idem_md.dem.sde import integrate_probability_flow, integrate_reverse_sde, score_evaluations
from idem_md.metrics import coordinate_w2, energy_w2, mode_counts

STEPS = (10, 20, 50, 100, 200, 1000)
METHODS = ("euler", "heun", "exponential")
GRIDS = ("uniform", "edm", "log_sigma")


@dataclass
class Row:
    process: str  # "sde" or "ode"
    method: str
    grid: str
    steps: int
    nfe: int  # score evaluations per sample
    seed: int
    x_w2: float
    e_w2: float
    mode_tv: float
    mean_energy_error: float
    ode_strong_error: float | None
    seconds: float


def mode_tv(x: torch.Tensor, gmm) -> float:
    """Total variation between the sample's mode fractions and the uniform 1/M (outside-any-mode mass included)."""
    counts = mode_counts(x.numpy(), gmm.means.numpy(), std=gmm.std)
    f = counts / len(x)
    return float(0.5 * (np.abs(f - 1.0 / len(f)).sum() + (1.0 - f.sum())))


def metrics(x_red: torch.Tensor, ref: torch.Tensor, gmm, n_w2: int, mean_e: float) -> tuple[float, ...]:
    """(coordinate W2, energy W2, mode TV, mean-energy error) of reduced-unit samples ``(N, 2)`` against exact ones."""
    x_red = x_red[torch.isfinite(x_red).all(1)]
    e = gmm.energy(x_red[:, None]).double()
    e_ref = gmm.energy(ref[:, None]).double()
    xw2 = coordinate_w2(x_red[:n_w2].numpy(), ref[:n_w2].numpy())
    return xw2, energy_w2(e.numpy(), e_ref.numpy()), mode_tv(x_red, gmm), abs(float(e.mean()) - mean_e)


def exact_score_fn(gmm, schedule: GeometricNoiseSchedule, scale: float):
    """Exact noised score in working coordinates, ``(B, 1, 2), (B,) -> (B, 1, 2)``."""
    mu = gmm.means.double()  # (M, 2) reduced
    mu_sq = (mu * mu).sum(1)  # (M,)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # GaussianMixture.noised_score by one matmul (no (B, M, 2) tensor): the benchmark's hot loop
        y = x[:, 0].double() * scale  # (B, 2) reduced
        var = (gmm.std**2 + schedule.h(t.double()) * scale**2)[:, None]  # (B, 1)
        sq = (y * y).sum(1, keepdim=True) - 2.0 * y @ mu.T + mu_sq  # (B, M)
        w = torch.softmax(-0.5 * sq / var, dim=1)
        return ((w @ mu - y) / var * scale).to(x.dtype)[:, None]
    return score


def _methods(methods: list[str], exponential_sigmas: list[float]) -> list[tuple[str, float]]:
    """(method, exponential_sigma) pairs of the sweep: every method with c = 0, then the exponential one per c."""
    return [(m, 0.0) for m in methods] + [("exponential", c) for c in exponential_sigmas]


def _label(method: str, c: float) -> str:
    return method if c == 0.0 else f"{method} c={c:g}"


def run(args) -> dict:
    gmm = get_energy("gmm40").double()
    cfg = preset("gmm40")
    scale = cfg.coordinate_scale
    schedule = GeometricNoiseSchedule(cfg.sigma_min, cfg.sigma_max)
    score = exact_score_fn(gmm, schedule, scale)
    rows: list[Row] = []
    floors = []
    mean_e = float(gmm.energy(gmm.sample(10**6, generator=torch.Generator().manual_seed(7))[:, None]).mean())
    for seed in range(args.seeds):
        g = torch.Generator().manual_seed(1000 + seed)
        ref = gmm.sample(args.n, generator=g).double()
        floors.append(metrics(gmm.sample(args.n, generator=g).double(), ref, gmm, args.n_w2, mean_e))
        x1_ode = sample_prior(args.n, (1, 2), schedule, mean_free=False, generator=g, dtype=torch.float64)
        x0_ode_ref = integrate_probability_flow(score, x1_ode, schedule, steps=2000, method="heun", time_grid="edm")
        for process in args.processes:
            for method, c in _methods(args.methods, args.exponential_sigma):
                for grid in args.grids:
                    for steps in args.steps:
                        x1 = sample_prior(args.n, (1, 2), schedule, mean_free=False, generator=g,
                                          dtype=torch.float64) if process == "sde" else x1_ode
                        t0 = time.perf_counter()
                        if process == "sde":
                            x0 = integrate_reverse_sde(score, x1, schedule, steps=steps, method=method,
                                                       time_grid=grid, diffusion_scale=cfg.diffusion_scale,
                                                       generator=g, exponential_sigma=c)
                        else:
                            x0 = integrate_probability_flow(score, x1, schedule, steps=steps, method=method,
                                                            time_grid=grid, exponential_sigma=c)
                        dt = time.perf_counter() - t0
                        xw2, ew2, tv, de = metrics(x0[:, 0] * scale, ref, gmm, args.n_w2, mean_e)
                        strong = None if process == "sde" else float((x0 - x0_ode_ref).norm(dim=-1).mean() * scale)
                        rows.append(Row(process, _label(method, c), grid, steps, score_evaluations(method, steps), seed,
                                        xw2, ew2, tv, de, strong, dt))
                        print(f"{process} {method:11s} {grid:9s} {steps:5d} nfe {rows[-1].nfe:5d}  x-W2 {xw2:.4f}  "
                              f"E-W2 {ew2:.4f}  modeTV {tv:.4f}  dE {de:.4f}  strong {strong}  ({dt:.1f} s)",
                              flush=True)
    floor = np.mean(np.array(floors), axis=0)
    return dict(
        command="python benchmarks/integrators.py " + " ".join(args.argv),
        machine=f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
        n_samples=args.n, n_w2=args.n_w2, seeds=args.seeds, target="gmm40 exact noised score",
        schedule=dict(sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max, coordinate_scale=scale,
                      diffusion_scale=cfg.diffusion_scale),
        floor=dict(x_w2=float(floor[0]), e_w2=float(floor[1]), mode_tv=float(floor[2]),
                   mean_energy_error=float(floor[3])),
        rows=[asdict(r) for r in rows],
    )


def _w2_1d(a: np.ndarray, b: np.ndarray, n_q: int = 10000) -> float:
    """1D W2 (with the root) by quantile matching on ``n_q`` mid-point levels (any sizes)."""
    q = (np.arange(n_q) + 0.5) / n_q
    return float(np.sqrt(np.mean((np.quantile(a, q) - np.quantile(b, q)) ** 2)))


def _pair_distances(x: torch.Tensor) -> np.ndarray:
    """Pooled interatomic distances of ``(N, n, d)`` configurations."""
    i, j = torch.triu_indices(x.shape[1], x.shape[1], 1)
    return (x[:, i] - x[:, j]).norm(dim=-1).flatten().double().numpy()


def run_trained(args) -> dict:
    """The reverse-SDE sweep with a trained sampler's network against reference samples."""
    from idem_md import IDEMSampler

    sampler = IDEMSampler.load(args.checkpoint, device="cpu")
    energy = sampler.energy
    ref = torch.as_tensor(np.load(args.reference), dtype=torch.float32).reshape(-1, energy.n_particles,
                                                                                energy.spatial_dim)
    ref = ref - ref.mean(1, keepdim=True)  # the DW-4 split is not centred
    e_ref = energy.energy(ref).double().numpy()
    rows = []
    base = sampler.config
    combos = [(m, c, g, lo) for m, c in _methods(args.methods, args.exponential_sigma) for g in args.grids
              for lo in (args.sigma_lo if g != "uniform" else [None])]
    for method, c, grid, lo in combos:
        for steps in args.steps:
            # with_refill_sampling: sample() integrates with the sde_* fields set here (not the run's sample_*)
            sampler.config = base.replace(sde_method=method, sde_time_grid=grid, sde_exponential_sigma=c,
                                          sde_grid_sigma_lo=lo).with_refill_sampling()
            sampler.generator.manual_seed(1000)
            t0 = time.perf_counter()
            smp = sampler.sample(args.n, steps=steps, progress=False, compute_energies=False,
                                 max_failed_fraction=1.0)
            dt = time.perf_counter() - t0
            x = smp.positions if torch.is_tensor(smp.positions) else torch.as_tensor(smp.positions)
            e = energy.energy(x.float()).double().numpy()
            ok = np.isfinite(e)
            ew2 = _w2_1d(e[ok], e_ref) if ok.any() else float("nan")
            dw2 = _w2_1d(_pair_distances(x[torch.from_numpy(ok)]), _pair_distances(ref)) if ok.any() else float("nan")
            med = float(np.median(e[ok])) if ok.any() else float("nan")
            rows.append(dict(process="sde", method=_label(method, c), grid=grid, steps=steps,
                             grid_sigma_lo=lo,
                             nfe=score_evaluations(method, steps), e_w2=ew2, d_w2=dw2, median_energy=med,
                             n_kept=int(ok.sum()), seconds=dt))
            print(f"{_label(method, c):11s} {grid:9s} lo {lo!s:6s} {steps:5d} nfe {rows[-1]['nfe']:5d}  "
                  f"E-W2 {ew2:.4f}  dist-W2 {dw2:.4f}  median E {med:.4g}  kept {int(ok.sum())}  ({dt:.1f} s)",
                  flush=True)
    sampler.config = base
    return dict(command="python benchmarks/integrators.py " + " ".join(args.argv),
                machine=f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
                n_samples=args.n, n_reference=len(ref), checkpoint=str(args.checkpoint),
                outer_iterations=sampler.outer_iteration, diffusion_scale=base.diffusion_scale, rows=rows)


def summary_trained(result: dict) -> str:
    lines = ["| method | grid | steps | NFE | E-W2 | distance W2 | finite samples |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['grid']} | {r['steps']} | {r['nfe']} | {r['e_w2']:.3f} | {r['d_w2']:.4f} | "
                     f"{r['n_kept']} |")
    return "\n".join(lines)


def summary(result: dict) -> str:
    """Markdown table: seed-mean metrics per (process, method, grid, steps)."""
    from collections import defaultdict

    acc = defaultdict(list)
    for r in result["rows"]:
        acc[(r["process"], r["method"], r["grid"], r["steps"], r["nfe"])].append(
            (r["x_w2"], r["e_w2"], r["mode_tv"], r["mean_energy_error"],
             np.nan if r["ode_strong_error"] is None else r["ode_strong_error"]))
    lines = ["| process | method | grid | steps | NFE | x-W2 | E-W2 | mode TV | mean-E error | ODE strong error |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for k, v in acc.items():
        m = np.mean(np.array(v), axis=0)
        strong = "" if math.isnan(m[4]) else f"{m[4]:.2e}"
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {k[4]} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | "
                     f"{m[3]:.3f} | {strong} |")
    f = result["floor"]
    lines.append(f"| exact vs exact | | | | | {f['x_w2']:.3f} | {f['e_w2']:.3f} | {f['mode_tv']:.3f} | "
                 f"{f['mean_energy_error']:.3f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import sys

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000, help="samples per configuration (and exact reference samples)")
    p.add_argument("--n-w2", type=int, default=4000, help="of which this many enter the coordinate W2")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    p.add_argument("--processes", nargs="+", default=["sde", "ode"], choices=["sde", "ode"])
    p.add_argument("--exponential-sigma", type=float, nargs="*", default=[], metavar="C",
                   help="also run the exponential integrator with these exponential_sigma (working length)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--grids", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    p.add_argument("--sigma-lo", type=float, nargs="+", default=[None], metavar="S",
                   help="with --checkpoint: sde_grid_sigma_lo values for the edm / log_sigma grids (default: the rule)")
    p.add_argument("--checkpoint", help="a trained sampler's checkpoint (then --reference is required)")
    p.add_argument("--reference", help="reference samples .npy (rows: flattened configurations)")
    p.add_argument("--out", help="JSON output path")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(1)
    if args.checkpoint:
        if not args.reference:
            p.error("--checkpoint needs --reference")
        result = run_trained(args)
        print(summary_trained(result))
    else:
        result = run(args)
        print(summary(result))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
