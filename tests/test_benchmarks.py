"""The baselines in the benchmark scripts compute the same function as the library (fair comparisons)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_training import IDEMStyleLennardJones  # noqa: E402

from idem_md import get_energy  # noqa: E402


def test_idem_style_lj_equals_our_lj_energy_and_forces():
    x = 1.2 * torch.randn(64, 13, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    e_ref, f_ref = get_energy("lj13", softening=0.0).energy_and_forces(x)
    e, f = IDEMStyleLennardJones(13).energy_and_forces(x)
    torch.testing.assert_close(e, e_ref, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(f, f_ref, rtol=1e-12, atol=1e-9 * float(f_ref.abs().max()))
