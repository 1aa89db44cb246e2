"""Energy W2 (with root) of a sample file against a *whole* reference set, the check's protocol (not a test).

    python benchmarks/energy_w2_full.py runs/dw4_s1_smc.npz --system dw4 \
        --reference ../shared/reference/test_split_DW4.npy data/md_dw4.npz

Beside each value: the same statistic for random subsets of the same size drawn from the long MD set, i.e. what an
exact sampler scores (the floor), as mean +- std over 20 subsets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from idem_md import get_energy
from idem_md.io import Samples
from idem_md.metrics import distance_w2, energy_w2

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("file", type=Path)
    p.add_argument("--system", required=True)
    p.add_argument("--reference", nargs="+", type=Path, required=True)
    args = p.parse_args(argv)
    e = get_energy(args.system)
    n, d = e.n_particles, e.spatial_dim
    s = Samples.load(args.file, n_particles=n, spatial_dim=d)
    x = s.positions.double()
    es = e.energy(x).numpy()
    md = Samples.load(ROOT / "data" / f"md_{args.system}.npz", n_particles=n, spatial_dim=d).positions.double()
    rng = np.random.default_rng(0)
    print(f"{args.file}: N = {len(x)}, energy mean {es.mean():.3f}, std {es.std():.3f}, max {es.max():.2f}")
    for ref_path in args.reference:
        r = Samples.load(ref_path, n_particles=n, spatial_dim=d).positions.double()
        er = e.energy(r).numpy()
        floor = [energy_w2(e.energy(md[rng.choice(len(md), len(x), replace=False)]).numpy(), er) for _ in range(20)]
        dw = distance_w2(x.numpy(), r.numpy(), n, d)
        print(f"  vs {ref_path} (N = {len(r)}, mean {er.mean():.3f}, std {er.std():.3f}, max {er.max():.2f}): "
              f"energy W2 {energy_w2(es, er):.3f} (exact-sampler floor {np.mean(floor):.3f} +- {np.std(floor):.3f}), "
              f"distance W2 {dw:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
