"""The fused numba kernels agree with the pure-torch reference energies and forces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from idem_md import get_energy
from idem_md.energies import LennardJonesCluster, MultiDoubleWell, kernels

pytest.importorskip("numba")

from conftest import require_reference
F32_EPS = 2.0**-24  # unit roundoff of float32


def _lattice_configs(n: int, d: int, batch: int, seed: int, spacing: float = 1.1, noise: float = 0.15) -> torch.Tensor:
    """``(batch, n, d)`` float64: perturbed grid points, so no pair is pathologically close."""
    g = torch.Generator().manual_seed(seed)
    side = int(np.ceil(n ** (1.0 / d)))
    grid = torch.cartesian_prod(*[torch.arange(side, dtype=torch.float64)] * d).reshape(-1, d)[:n] * spacing
    return grid + noise * torch.randn(batch, n, d, generator=g, dtype=torch.float64)


def _random_configs(n: int, d: int, batch: int, seed: int, scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, n, d, generator=g, dtype=torch.float64)


def _reference(name: str, n: int, d: int, count: int) -> torch.Tensor:
    path = require_reference(f"test_split_{name}.npy")
    x = torch.from_numpy(np.load(path)[:count].astype(np.float64)).reshape(count, n, d)
    return x - x.mean(dim=1, keepdim=True)  # DW-4 is stored uncentred


def _torch_and_numba(energy_cls, *args, **kw):
    return energy_cls(*args, backend="torch", **kw), energy_cls(*args, backend="numba", **kw)


def _assert_close_rowwise(actual: torch.Tensor, expected: torch.Tensor, rtol: float, row_rtol: float,
                          atol: float = 0.0) -> None:
    """``|actual - expected| <= rtol |expected| + row_rtol max_row |expected| + atol``, per configuration.

    The row term scales with each configuration's own largest entry, so a batch holding
    one near-collision (energies of 1e6 and more) does not loosen the check on the others.
    """
    a = actual.double().reshape(actual.shape[0], -1)
    e = expected.double().reshape(expected.shape[0], -1)
    tol = rtol * e.abs() + row_rtol * e.abs().amax(1, keepdim=True) + atol
    err = (a - e).abs()
    assert bool((err <= tol).all()), f"max excess {float((err - tol).max()):.3e}, max error {float(err.max()):.3e}"


def _assert_float64_agree(ref, fast, x: torch.Tensor) -> None:
    e_ref, f_ref = ref.energy_and_forces(x)
    e, f = fast.energy_and_forces(x)
    assert e.dtype == f.dtype == torch.float64 and f.shape == x.shape
    _assert_close_rowwise(e, e_ref, rtol=1e-10, row_rtol=0.0, atol=1e-10)
    _assert_close_rowwise(f, f_ref, rtol=1e-10, row_rtol=1e-10)
    _assert_close_rowwise(fast.energy(x), e_ref, rtol=1e-10, row_rtol=0.0, atol=1e-10)


def _assert_float32_agree(ref, fast, x: torch.Tensor) -> None:
    """float32 kernel = float64 arithmetic on the float32 coordinates, rounded once on store."""
    x32 = x.float()
    e, f = fast.energy_and_forces(x32)
    assert e.dtype == f.dtype == torch.float32
    # Against the float64 reference at the same (rounded) coordinates: output rounding only.
    e_ref, f_ref = ref.energy_and_forces(x32.double())
    _assert_close_rowwise(e, e_ref, rtol=1.01 * F32_EPS, row_rtol=0.0, atol=1e-12)
    _assert_close_rowwise(f, f_ref, rtol=1.01 * F32_EPS, row_rtol=1e-12)
    # Against the float64 reference at the unrounded coordinates: float32 tolerance.
    e64, f64 = ref.energy_and_forces(x)
    _assert_close_rowwise(e, e64, rtol=1e-5, row_rtol=0.0, atol=1e-4)
    _assert_close_rowwise(f, f64, rtol=1e-5, row_rtol=1e-5)
    torch.testing.assert_close(fast.energy(x32), e, rtol=0, atol=0)


LJ_VARIANTS = [
    {},
    {"softening": 0.0},
    {"oscillator_scale": 0.0},
    {"pair_factor": 1.0},
    {"epsilon": 0.7, "r_m": 1.3, "pair_factor": 1.0, "softening": 0.0, "oscillator_scale": 0.0},
]


@pytest.mark.parametrize("kw", LJ_VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
@pytest.mark.parametrize("n, batch", [(13, 256), (55, 6)])
def test_lj_agrees_with_torch_reference(n, batch, kw):
    ref, fast = _torch_and_numba(LennardJonesCluster, n, 3, **kw)
    x = _lattice_configs(n, 3, batch, seed=n) * kw.get("r_m", 1.0)
    _assert_float64_agree(ref, fast, x)
    _assert_float32_agree(ref, fast, x)


def test_lj_random_configurations_with_close_pairs():
    # Unstructured configurations reach pair distances far below r_m and energies of 1e10 and more.
    ref, fast = _torch_and_numba(LennardJonesCluster, 13, 3)
    x = _random_configs(13, 3, 256, seed=1, scale=1.0)
    assert float(ref.energy(x).max()) > 1e6
    _assert_float64_agree(ref, fast, x)
    _assert_float32_agree(ref, fast, x)


def test_lj13_reference_samples():
    ref, fast = _torch_and_numba(LennardJonesCluster, 13, 3)
    x = _reference("LJ13", 13, 3, 1000)
    _assert_float64_agree(ref, fast, x)
    _assert_float32_agree(ref, fast, x)
    assert abs(float(fast.energy(x.float()).double().mean()) - float(ref.energy(x).mean())) < 1e-4


@pytest.mark.parametrize("kw", [{}, {"a": 1.3, "b": 2.0, "d0": 1.5}], ids=["default", "custom"])
@pytest.mark.parametrize("n, d, batch", [(4, 2, 512), (9, 3, 64)])
def test_dw_agrees_with_torch_reference(n, d, batch, kw):
    ref, fast = _torch_and_numba(MultiDoubleWell, n, d, **kw)
    x = _random_configs(n, d, batch, seed=n + d, scale=2.5)
    _assert_float64_agree(ref, fast, x)
    _assert_float32_agree(ref, fast, x)


def test_dw4_reference_samples():
    ref, fast = _torch_and_numba(MultiDoubleWell, 4, 2)
    x = _reference("DW4", 4, 2, 1000)
    _assert_float64_agree(ref, fast, x)
    _assert_float32_agree(ref, fast, x)


@pytest.mark.parametrize("d", [1, 2])
def test_low_dimensional_clusters(d):
    # 1D and 2D go through the kernels' zero-padded axes.
    for cls, n, x in [(LennardJonesCluster, 5, _lattice_configs(5, d, 32, seed=d)),
                      (MultiDoubleWell, 5, _random_configs(5, d, 32, seed=d, scale=2.0))]:
        ref, fast = _torch_and_numba(cls, n, d)
        _assert_float64_agree(ref, fast, x)
        _assert_float32_agree(ref, fast, x)


def test_dw_coincident_particles_match_guarded_reference():
    ref, fast = _torch_and_numba(MultiDoubleWell, 4, 2)
    x = _random_configs(4, 2, 8, seed=3, scale=2.0)
    x[:, 1] = x[:, 0]  # particles 0 and 1 coincide
    e, f = fast.energy_and_forces(x)
    e_ref, f_ref = ref.energy_and_forces(x)
    assert torch.isfinite(f).all()
    torch.testing.assert_close(e, e_ref, rtol=1e-10, atol=0)
    torch.testing.assert_close(f, f_ref, rtol=1e-10, atol=1e-12)


def test_flat_and_noncontiguous_inputs():
    _, fast = _torch_and_numba(LennardJonesCluster, 13, 3)
    x = _lattice_configs(13, 3, 16, seed=5)
    e, f = fast.energy_and_forces(x.reshape(16, 39))
    assert f.shape == (16, 39)
    # A permuted copy viewed back in (B, n, d) order is not contiguous.
    xt = x.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    assert not xt.is_contiguous()
    e_t, f_t = fast.energy_and_forces(xt)
    torch.testing.assert_close(e_t, e, rtol=0, atol=0)
    torch.testing.assert_close(f_t, f.reshape(16, 13, 3), rtol=0, atol=0)
    e0, f0 = fast.energy_and_forces(x[:0])
    assert e0.shape == (0,) and f0.shape == (0, 13, 3)


# ---------------------------------------------------------------- backend choice
def test_backend_selection(monkeypatch):
    calls = []
    real = kernels.lj_energy_forces_torch

    def spy(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(kernels, "lj_energy_forces_torch", spy)
    x = _lattice_configs(13, 3, 4, seed=0)
    get_energy("lj13", backend="torch").energy_and_forces(x)
    assert calls == []
    get_energy("lj13", backend="numba").energy_and_forces(x)
    assert calls == [1]
    get_energy("lj13").energy_and_forces(x)  # "auto" on a CPU tensor
    assert calls == [1, 1]
    # A batch that needs a gradient takes the differentiable torch path, whatever the backend.
    e, _ = get_energy("lj13", backend="numba").energy_and_forces(x.clone().requires_grad_(True))
    assert calls == [1, 1] and e.requires_grad


@pytest.mark.parametrize("bad", ["cuda", "NUMBA!", "", None, 3])
def test_bad_backend_raises(bad):
    with pytest.raises(ValueError, match="backend"):
        LennardJonesCluster(13, backend=bad)
    with pytest.raises(ValueError, match="backend"):
        MultiDoubleWell(4, backend=bad)


def test_use_numba_rules():
    x = torch.zeros(2, 4, 2)
    assert kernels.use_numba("numba", x) and kernels.use_numba("auto", x)
    assert not kernels.use_numba("torch", x)
    assert not kernels.use_numba("numba", x.half())
    assert kernels.check_backend("NUMBA") == "numba"


def test_numba_path_needs_no_grad():
    fast = LennardJonesCluster(13, 3, backend="numba")
    x = _lattice_configs(13, 3, 8, seed=2)
    e, f = fast.energy_and_forces(x)
    assert not e.requires_grad and not f.requires_grad
    with torch.no_grad():  # a leaf that requires grad is fine when grad mode is off
        e_ng, _ = fast.energy_and_forces(x.clone().requires_grad_(True))
    torch.testing.assert_close(e_ng, e, rtol=0, atol=0)
    # With grad mode on, a tensor that requires grad takes the differentiable torch path.
    xg = x.clone().requires_grad_(True)
    e_g = fast.energy(xg)
    assert e_g.requires_grad
    (grad,) = torch.autograd.grad(e_g.sum(), xg)
    torch.testing.assert_close(-grad, f, rtol=1e-10, atol=1e-10 * float(f.abs().max()))


def test_inference_mode():
    _, fast = _torch_and_numba(MultiDoubleWell, 4, 2)
    x = _random_configs(4, 2, 8, seed=4, scale=2.0)
    e_ref, f_ref = fast.energy_and_forces(x)
    with torch.inference_mode():
        e, f = fast.energy_and_forces(x.clone())
    torch.testing.assert_close(e, e_ref, rtol=0, atol=0)
    torch.testing.assert_close(f, f_ref, rtol=0, atol=0)


# ---------------------------------------------------------------- numpy interface
def test_numpy_interface_and_validation():
    x = _lattice_configs(13, 3, 4, seed=0).numpy()
    e, f = kernels.lj_energy_forces(x)
    assert e.shape == (4,) and f.shape == (4, 13, 3) and e.dtype == np.float64
    np.testing.assert_array_equal(kernels.lj_energy(x), e)
    ed, fd = kernels.dw_energy_forces(x[:, :4, :2].astype(np.float32))
    assert ed.dtype == fd.dtype == np.float32 and fd.shape == (4, 4, 2)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        kernels.lj_energy_forces(torch.from_numpy(x))
    with pytest.raises(ValueError, match="shape"):
        kernels.lj_energy_forces(x.reshape(4, 39))
    with pytest.raises(ValueError, match="1 to 3 dimensions"):
        kernels.dw_energy(np.zeros((2, 4, 4)))
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.dw_energy(np.zeros((2, 4, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="CPU"):
        kernels.lj_energy_torch(torch.zeros(1, 2, 3, device="meta"))


def test_import_does_not_load_numba():
    code = (
        "import sys, torch, idem_md\n"
        "from idem_md import get_energy\n"
        "e = get_energy('lj13'); get_energy('dw4', backend='numba')\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
