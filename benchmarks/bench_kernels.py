"""Throughput of energy + forces: torch autograd, torch analytic, fused numba kernels.

Not a test. Prints a markdown table of configurations per second (median of repeats
after a warm-up) for LJ-13, LJ-55 and DW-4, plus optional rows for GMM-40, a
``torch.compile`` of a dense analytic LJ form, and the numba JIT cost.

    .venv/bin/python benchmarks/bench_kernels.py                # main table
    .venv/bin/python benchmarks/bench_kernels.py --gmm --compile --jit-cost
    python benchmarks/bench_kernels.py --device cuda --gmm --compile   # on a GPU: torch paths only

The machine is shared: run it with nothing heavy of your own running and read the
min-max column as the noise of that run. The last column (configurations per second of
this process's CPU time, all threads) depends less on other load than the wall clock;
on an idle machine it is the wall-clock rate divided by the cores used.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from idem_md import get_energy
from idem_md.energies import Energy

__all__ = ["Result", "time_call", "main"]


@dataclass
class Result:
    """Timings of one (system, backend) pair."""

    system: str
    backend: str
    batch: int
    seconds: list[float]  # wall clock per call
    cpu_seconds: list[float]  # CPU time of this process (all threads) per call

    @property
    def rate(self) -> float:
        """Median configurations per second."""
        return self.batch / statistics.median(self.seconds)

    def row(self) -> str:
        lo, hi = self.batch / max(self.seconds), self.batch / min(self.seconds)
        ms = 1e3 * statistics.median(self.seconds)
        per_cpu = self.batch / statistics.median(self.cpu_seconds)
        return (f"| {self.system} | {self.backend} | {self.batch:,} | {self.rate / 1e6:.3f} "
                f"| {lo / 1e6:.3f}-{hi / 1e6:.3f} | {ms:.1f} | {per_cpu / 1e6:.3f} |")


_SYNC: Callable[[], None] = lambda: None  # torch.cuda.synchronize when timing on a GPU


def time_call(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls
    (on a GPU each call is followed by a device synchronisation, inside the timed region)."""
    for _ in range(warmup):
        fn()
    _SYNC()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        _SYNC()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def _configs(energy: Energy, batch: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """``(B, n, d)`` configurations near typical samples: a perturbed grid of spacing ~r_m
    for LJ, a wide Gaussian for DW (the cost does not depend on the values)."""
    g = torch.Generator().manual_seed(seed)
    n, d = energy.n_particles, energy.spatial_dim
    if energy.name.startswith("lj"):
        side = round(n ** (1.0 / d) + 0.5)
        grid = torch.cartesian_prod(*[torch.arange(side, dtype=torch.float64)] * d).reshape(-1, d)[:n] * 1.1
        x = grid + 0.1 * torch.randn(batch, n, d, generator=g, dtype=torch.float64)
    else:
        x = 2.0 * torch.randn(batch, n, d, generator=g, dtype=torch.float64)
    return x.to(dtype=dtype, device=_DEVICE)


_DEVICE = torch.device("cpu")


def _backends(name: str) -> dict[str, Callable[[torch.Tensor], object]]:
    ref = get_energy(name, backend="torch").to(_DEVICE)
    if _DEVICE.type != "cpu":  # the numba kernels are CPU-only; on a GPU the torch pair-list path runs
        return {"torch-autograd": lambda x: Energy._energy_and_forces(ref, x),
                "torch-analytic": lambda x: ref._energy_and_forces(x)}
    fast = get_energy(name, backend="numba")
    return {
        # Base-class default: autograd through the torch energy.
        "torch-autograd": lambda x: Energy._energy_and_forces(ref, x),
        "torch-analytic": lambda x: ref._energy_and_forces(x),
        "numba": lambda x: fast._energy_and_forces(x),
        # What a caller pays through the public API (shape and finiteness checks included).
        "numba, public API": lambda x: fast.energy_and_forces(x),
    }


def bench_pair_systems(args: argparse.Namespace, dtype: torch.dtype) -> list[Result]:
    results = []
    for name in args.systems:
        batch = args.batch_lj55 if name == "lj55" else args.batch
        x = _configs(get_energy(name), batch, dtype)
        for backend, fn in _backends(name).items():
            if backend not in args.backends and not (backend.startswith("numba") and "numba" in args.backends):
                continue
            repeats = args.repeats_slow if backend == "torch-autograd" else args.repeats
            results.append(Result(name, backend, batch, *time_call(lambda fn=fn, x=x: fn(x), repeats)))
            print(f"  {results[-1].row()}", file=sys.stderr, flush=True)
    return results


def bench_gmm(args: argparse.Namespace, dtype: torch.dtype) -> list[Result]:
    gmm = get_energy("gmm40")
    g = torch.Generator().manual_seed(0)
    x = gmm.sample(args.gmm_batch, generator=g).to(dtype=dtype, device=_DEVICE).reshape(args.gmm_batch, 1, 2)
    gmm = gmm.to(dtype=dtype, device=_DEVICE)
    out = [Result("gmm40", "torch-analytic", args.gmm_batch,
                  *time_call(lambda: gmm._energy_and_forces(x), args.repeats)),
           Result("gmm40", "torch-autograd", args.gmm_batch,
                  *time_call(lambda: Energy._energy_and_forces(gmm, x), args.repeats))]
    for r in out:
        print(f"  {r.row()}", file=sys.stderr, flush=True)
    return out


def lj_dense_energy_forces(x: torch.Tensor, pair_factor: float = 2.0, softening: float = 1e-6,
                           oscillator_scale: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """LJ-n (epsilon = r_m = 1) over all ordered pairs ``(B, n, n, d)``: no index lists, so
    ``torch.compile`` can fuse it. Each unordered pair is counted twice, hence the 1/2."""
    n = x.shape[1]
    diff = x[:, :, None, :] - x[:, None, :, :]  # (B, n, n, d)
    r2 = (diff * diff).sum(-1) + softening  # (B, n, n)
    off_diag = ~torch.eye(n, dtype=torch.bool, device=x.device)
    inv6 = torch.where(off_diag, (1.0 / r2) ** 3, torch.zeros((), dtype=x.dtype))
    e_pair = 0.5 * pair_factor * (inv6 * (inv6 - 2.0)).sum((-2, -1))
    g = pair_factor * (-12.0) * inv6 * (inv6 - 1.0) / r2  # (B, n, n): 2 dE/dr2 per ordered pair
    grad = (g.unsqueeze(-1) * diff).sum(2)  # (B, n, d)
    centred = x - x.mean(1, keepdim=True)
    e = e_pair + oscillator_scale * (centred * centred).sum((-2, -1))
    return e, -(grad + 2.0 * oscillator_scale * centred)


def bench_compile(args: argparse.Namespace, dtype: torch.dtype) -> tuple[list[Result], str]:
    lj = get_energy("lj13", backend="torch").to(_DEVICE)
    x = _configs(lj, args.batch, dtype)
    e_ref, f_ref = lj._energy_and_forces(x[:256].double())
    e, f = lj_dense_energy_forces(x[:256].double())
    torch.testing.assert_close(e, e_ref)
    torch.testing.assert_close(f, f_ref)
    results = [Result("lj13", "torch-dense (eager)", args.batch,
                      *time_call(lambda: lj_dense_energy_forces(x), args.repeats))]
    note = ""
    try:
        compiled = torch.compile(lj_dense_energy_forces, dynamic=False)
        t0 = time.perf_counter()
        _, f_c = compiled(x)
        compile_s = time.perf_counter() - t0
        _, f_e = lj_dense_energy_forces(x)
        err = float((f_c - f_e).abs().max() / f_e.abs().max())
        results.append(Result("lj13", "torch-dense (torch.compile)", args.batch,
                              *time_call(lambda: compiled(x), args.repeats)))
        note = (f"torch.compile of the dense LJ-13 form: first call (compile) {compile_s:.1f} s; "
                f"max |dF|/max|F| vs eager {err:.1e}")
    except Exception as exc:  # noqa: BLE001 - report, never fail the benchmark on an optional backend
        note = f"torch.compile failed: {type(exc).__name__}: {exc}"
    for r in results:
        print(f"  {r.row()}", file=sys.stderr, flush=True)
    return results, note


_JIT_PROBE = """
import time, torch
t0 = time.perf_counter()
from idem_md.energies import kernels
x = torch.rand(4, 13, 3, dtype=torch.{dtype})
kernels.lj_energy_forces_torch(x)
t1 = time.perf_counter()
kernels.dw_energy_forces_torch(torch.rand(4, 4, 2, dtype=torch.{dtype}))
print(f"{{t1 - t0:.2f}} {{time.perf_counter() - t1:.2f}}")
"""


def jit_cost(dtype_name: str) -> str:
    """First-call seconds (numba import + compile or cache load) in fresh processes: with an
    empty cache directory (cold), then again with the cache it left (warm)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        code = _JIT_PROBE.format(dtype=dtype_name)
        runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
                .stdout.split() for _ in range(2)]
    (cold_lj, cold_dw), (warm_lj, warm_dw) = runs
    return (f"numba first call, {dtype_name}: cold (compile) LJ {cold_lj} s + DW {cold_dw} s; "
            f"warm (on-disk cache) LJ {warm_lj} s + DW {warm_dw} s (includes importing numba)")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", nargs="+", default=["lj13", "lj55", "dw4"], help="registry names")
    p.add_argument("--backends", nargs="+", default=["torch-autograd", "torch-analytic", "numba"],
                   choices=["torch-autograd", "torch-analytic", "numba"])
    p.add_argument("--batch", type=int, default=65_536, help="configurations per call (LJ-13, DW-4)")
    p.add_argument("--batch-lj55", type=int, default=16_384, help="configurations per call for LJ-55")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per row (median reported)")
    p.add_argument("--repeats-slow", type=int, default=5, help="timed calls for torch-autograd")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--gmm", action="store_true", help="also time GMM-40 (torch, closed form)")
    p.add_argument("--gmm-batch", type=int, default=512 * 500)
    p.add_argument("--compile", action="store_true", help="also try torch.compile of a dense LJ-13 form")
    p.add_argument("--jit-cost", action="store_true", help="also measure numba's first-call cost")
    p.add_argument("--device", default="cpu", help="cpu (all backends) or cuda (torch backends only)")
    args = p.parse_args(argv)
    if min(args.repeats, args.repeats_slow) < 1 or min(args.batch, args.batch_lj55, args.gmm_batch) < 1:
        p.error("repeats and batch sizes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    global _DEVICE, _SYNC
    args = _parse(argv)
    dtype = getattr(torch, args.dtype)
    import numba

    _DEVICE = torch.device(args.device)
    where = f"{os.cpu_count()} CPUs"
    if _DEVICE.type == "cuda":
        _SYNC = torch.cuda.synchronize
        where = torch.cuda.get_device_name(_DEVICE)
    print(f"# energy + forces throughput, {args.dtype}, {platform.processor() or platform.machine()}, "
          f"{where}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numba {numba.__version__} ({numba.get_num_threads()} threads)\n")
    results = bench_pair_systems(args, dtype)
    notes = []
    if args.gmm:
        results += bench_gmm(args, dtype)
    if args.compile:
        r, note = bench_compile(args, dtype)
        results += r
        notes.append(note)
    if args.jit_cost:
        notes.append(jit_cost(args.dtype))
    print("| system | backend | batch | M configs/s (median) | min-max | ms/call (median) | M configs per CPU-s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(r.row())
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
