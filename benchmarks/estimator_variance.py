"""Error of the Monte-Carlo DEM score estimator against the exact GMM-40 noised score, at equal energy evaluations
(not a test).

For each estimator variant (plain, antithetic pairs, the Tweedie control variate with scale ``c``, adaptive K by
ESS, importance sampling of the perturbations shifted by ``h * s`` with ``s`` the exact score plus relative noise
``rho`` (a stand-in for a trained network), and combinations) and each K: ``--n`` noised points ``x_t = x_0 + sqrt(h(t)) eps`` with ``x_0`` exact GMM-40
samples, at the times listed and at uniform random t (the training distribution), in the gmm40 preset's working
coordinates (scale 50, sigma_min 1e-5, sigma_max 1, score clip 70). ``s*`` is the exact noised score with the same
clip applied (what an exact estimator would return). Reported: the relative mean squared error
``sum |S - s*|^2 / sum |s*|^2`` per time, and for uniform t the training-weighted error
``mean (h + 1e-3) |S - s*|^2`` (the h_plus_eps weighting the GMM-40 regression uses), together with the energy
evaluations per point actually spent.

    OMP_NUM_THREADS=1 python benchmarks/estimator_variance.py --n 2000 --out docs/results/estimator_variance_gmm40.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict, dataclass

import torch

from idem_md import get_energy
from idem_md.config import preset
from idem_md.dem import GeometricNoiseSchedule, clip_score, estimate_dem_score

TIMES = (0.1, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0)
MODE_STD_WORKING = 1.3133 / 50.0  # GMM-40 mode std (softplus(1) reduced length) in working length


@dataclass
class Variant:
    name: str
    antithetic: bool = False
    cv_scale: float | None = None
    target_ess: float | None = None
    min_k: int = 50
    shift_noise: float | None = None  # importance-sampling shift h * (s* + rho * |s*|_rms * xi), per point; None: no shift


@dataclass
class Row:
    variant: str
    K: int
    t: str  # a time, or "uniform"
    evaluations_per_point: float
    rel_mse: float
    weighted_mse: float  # mean (h + 1e-3) |S - s*|^2, working units


def variants(cv_scales: list[float], target_ess: list[float], shift_noise: list[float]) -> list[Variant]:
    out = [Variant("plain"), Variant("antithetic", antithetic=True)]
    for c in cv_scales:
        out.append(Variant(f"cv c={c:g}", cv_scale=c))
        out.append(Variant(f"antithetic+cv c={c:g}", antithetic=True, cv_scale=c))
    for e in target_ess:
        out.append(Variant(f"adaptive ess>={e:g}", target_ess=e))
    for rho in shift_noise:
        out.append(Variant(f"IS shift rho={rho:g}", shift_noise=rho))
        for c in cv_scales[:1]:
            out.append(Variant(f"IS shift rho={rho:g}+cv c={c:g}", shift_noise=rho, cv_scale=c))
    return out


def one(gmm, schedule, cfg, x0w: torch.Tensor, t: torch.Tensor, v: Variant, K: int, seed: int) -> tuple[float, ...]:
    """(evaluations per point, relative MSE, weighted MSE) for noised points built from ``x0w`` (working, (N, 2))."""
    scale = cfg.coordinate_scale
    g = torch.Generator().manual_seed(seed)
    h = schedule.h(t)
    x_t = x0w + h.sqrt()[:, None] * torch.randn(x0w.shape, generator=g, dtype=x0w.dtype)
    exact = gmm.noised_score(x_t * scale, h * scale**2) * scale  # (N, 2) working
    exact = clip_score(exact[:, None], cfg.score_clip, per_particle=False)[:, 0]  # what an exact estimator returns
    shift = None
    if v.shift_noise is not None:  # a stand-in for a trained network: the exact score with relative noise rho
        size = exact.pow(2).mean(1, keepdim=True).sqrt()  # (N, 1): per point, so that every t gets noise rho
        s_net = exact + v.shift_noise * size * torch.randn(exact.shape, generator=g, dtype=exact.dtype)
        shift = (h[:, None] * s_net)[:, None]  # (N, 1, 2): h * s, the Tweedie denoising step
    est = estimate_dem_score(gmm, x_t[:, None], t, schedule, K, coordinate_scale=scale, score_clip=cfg.score_clip,
                             generator=g, antithetic=v.antithetic, control_variate_scale=v.cv_scale,
                             target_ess=v.target_ess, min_mc_samples=v.min_k, proposal_shift=shift)
    err = (est.score[:, 0] - exact).pow(2).sum(1)  # (N,)
    rel = float(err.sum() / exact.pow(2).sum(1).sum())
    weighted = float(((h + cfg.loss_weight_eps) * err).mean())
    return est.n_evaluations / len(t), rel, weighted


def run(args) -> dict:
    gmm = get_energy("gmm40").double()
    cfg = preset("gmm40")
    schedule = GeometricNoiseSchedule(cfg.sigma_min, cfg.sigma_max)
    x0w = gmm.sample(args.n, generator=torch.Generator().manual_seed(3)).double() / cfg.coordinate_scale
    t_uniform = torch.rand(args.n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rows = []
    for v in variants(args.cv_scales, args.target_ess, args.shift_noise):
        if args.only and not any(o in v.name for o in args.only):
            continue
        for K in (args.K if v.target_ess is None else [max(args.K)]):
            for tv in [*args.times, "uniform"]:
                t = t_uniform if tv == "uniform" else torch.full((args.n,), float(tv), dtype=torch.float64)
                ev, rel, w = one(gmm, schedule, cfg, x0w, t, v, K, seed=11)
                rows.append(Row(v.name, K, str(tv), ev, rel, w))
                print(f"{v.name:24s} K {K:5d} t {str(tv):8s} evals/pt {ev:7.1f}  rel MSE {rel:.4e}  weighted {w:.4e}",
                      flush=True)
    return dict(command="python benchmarks/estimator_variance.py " + " ".join(args.argv),
                machine=f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
                n_points=args.n, target="gmm40 exact noised score", rows=[asdict(r) for r in rows])


def summary(result: dict) -> str:
    rows = result["rows"]
    times = sorted({r["t"] for r in rows if r["t"] != "uniform"}, key=float)
    head = "| variant | K | evals/point (uniform t) | weighted MSE (uniform t) | " + " | ".join(
        f"rel MSE t={t}" for t in times) + " |"
    lines = [head, "|" + "---|" * (4 + len(times))]
    keys = []
    for r in rows:
        if (r["variant"], r["K"]) not in keys:
            keys.append((r["variant"], r["K"]))
    for name, K in keys:
        sel = {r["t"]: r for r in rows if r["variant"] == name and r["K"] == K}
        u = sel["uniform"]
        lines.append(f"| {name} | {K} | {u['evaluations_per_point']:.0f} | {u['weighted_mse']:.3e} | "
                     + " | ".join(f"{sel[t]['rel_mse']:.2e}" for t in times) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="noised points per time")
    p.add_argument("--K", type=int, nargs="+", default=[100, 250, 500, 1000])
    p.add_argument("--times", type=float, nargs="+", default=list(TIMES))
    p.add_argument("--cv-scales", type=float, nargs="+", default=[MODE_STD_WORKING, 0.1])
    p.add_argument("--target-ess", type=float, nargs="+", default=[20.0, 50.0])
    p.add_argument("--shift-noise", type=float, nargs="+", default=[0.0, 0.5],
                   help="importance-sampling shift variants: relative noise of the stand-in network score")
    p.add_argument("--only", nargs="+", default=None, help="run only variants whose name contains one of these")
    p.add_argument("--out", help="JSON output path")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(1)
    result = run(args)
    print(summary(result))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
