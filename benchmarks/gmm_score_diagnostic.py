"""Where a trained GMM-40 sampler's score is wrong (not a test).

For each checkpoint: 10,000 reverse-SDE samples evaluated against 10,000 exact samples (coordinate W2, energy W2,
mode coverage), and the median relative error of the network's score and of the Monte-Carlo DEM estimator
against the exact noised score (``GaussianMixture.noised_score``) at several diffusion times, on noised exact samples.

    idem-md train --system gmm40 --out runs/gmm_h_plus_eps --set loss_weighting=h_plus_eps --outer-iterations 20
    idem-md train --system gmm40 --out runs/gmm_constant --set loss_weighting=constant --outer-iterations 20
    python benchmarks/gmm_score_diagnostic.py runs/gmm_h_plus_eps/checkpoint.pt runs/gmm_constant/checkpoint.pt
"""

from __future__ import annotations

import argparse

import torch

from idem_md import IDEMSampler, evaluate, get_energy
from idem_md.dem import estimate_dem_score
from idem_md.io import Samples

TIMES = (0.01, 0.3, 0.6, 0.8, 0.9)


def score_errors(sampler: IDEMSampler, n: int = 300, K: int = 500) -> dict[str, list[float]]:
    """Median relative error |s - s_exact| / |s_exact| of the network and of the estimator, per time."""
    gmm = sampler.energy.double()
    scale = sampler.config.coordinate_scale
    g = torch.Generator().manual_seed(1)
    x = gmm.sample(n, generator=g).double()  # (n, 2), reduced units
    out: dict[str, list[float]] = {"network": [], "estimator": [], "exact_norm": []}
    for tv in TIMES:
        t = torch.full((n,), tv, dtype=torch.float64)
        h = sampler.schedule.h(t)  # working units
        y = x / scale + h.sqrt()[:, None] * torch.randn(n, 2, generator=g, dtype=torch.float64)  # (n, 2) working
        exact = gmm.noised_score(y * scale, h * scale**2) * scale  # score in working coordinates
        with torch.no_grad():
            net = sampler.network(y.float()[:, None], t.float())[:, 0].double()
        est = estimate_dem_score(sampler.energy, y.float()[:, None], t.float(), sampler.schedule, K,
                                 coordinate_scale=scale, score_clip=sampler.config.score_clip,
                                 generator=g).score[:, 0].double()
        norm = exact.norm(dim=1)
        out["network"].append(float(((net - exact).norm(dim=1) / norm).median()))
        out["estimator"].append(float(((est - exact).norm(dim=1) / norm).median()))
        out["exact_norm"].append(float(norm.median()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--n-samples", type=int, default=10000)
    args = p.parse_args()
    gmm = get_energy("gmm40")
    ref = Samples(gmm.sample(10000, generator=torch.Generator().manual_seed(12345)).reshape(-1, 1, 2), None, {})
    print(f"| checkpoint | outer | loss weighting | coordinate W2 | energy W2 | mode coverage | "
          f"network score error at t = {', '.join(map(str, TIMES))} | estimator (K 500) error |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.checkpoints:
        s = IDEMSampler.load(path, device="cpu")
        m = evaluate(s.sample(args.n_samples, progress=False), gmm, ref, likelihood=False).metrics
        err = score_errors(s)
        print(f"| {path} | {s.outer_iteration} | {s.config.loss_weighting} | {m['coordinate_w2'].mean:.2f} ± "
              f"{m['coordinate_w2'].std:.2f} | {m['energy_w2'].mean:.2f} | {m['mode_coverage'].mean:.3f} | "
              f"{' / '.join(f'{e:.0%}' for e in err['network'])} | {' / '.join(f'{e:.1%}' for e in err['estimator'])} |",
              flush=True)


if __name__ == "__main__":
    main()
