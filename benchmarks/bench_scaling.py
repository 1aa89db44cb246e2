"""Data-parallel scaling benchmark (not a test): training steps/s with 1..N processes.

Runs `idem_md train` under torchrun with --nproc-per-node 1..N for a fixed number of inner
steps at a fixed global batch and reports steps/s from the run's metrics log.

    python benchmarks/bench_scaling.py --system dw4 --nprocs 1 2            # CPU, gloo
    python benchmarks/bench_scaling.py --system lj13 --nprocs 1 2 4 8 --device cuda   # GPUs, NCCL
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(system: str, nproc: int, device: str, sets: list[str], outer: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "idem_md", "train", "--system", system, "--out", str(out), "--outer-iterations", str(outer),
               "--device", device, "--quiet", *sum((["--set", s] for s in sets), [])]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))} if device == "cpu" else None
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    cfg = dict(s.split("=", 1) for s in sets)
    inner = int(cfg.get("inner_steps", 100))
    timed = records[1:] or records  # the first outer iteration includes start-up and JIT
    wall = sum(r["wall_time_s"] for r in timed)
    return {"nproc": nproc, "outer_iterations": len(timed), "steps_per_s": inner * len(timed) / wall,
            "wall_s_per_outer": wall / len(timed)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", default="dw4")
    p.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--outer", type=int, default=3)
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                   help="config overrides (default: batch 512, K 1000, 10 inner steps, 200 new samples, 100 SDE steps)")
    args = p.parse_args()
    sets = args.set or ["inner_steps=10", "samples_per_outer=200", "sde_steps=100", "checkpoint_every=1000"]
    print(f"| processes | steps/s | s per outer iteration | speed-up |\n|---|---|---|---|")
    base = None
    for n in args.nprocs:
        r = run(args.system, n, args.device, sets, args.outer)
        base = base or r["steps_per_s"]
        print(f"| {n} | {r['steps_per_s']:.3f} | {r['wall_s_per_outer']:.1f} | {r['steps_per_s'] / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
