"""CUDA: the same results on the GPU as on the CPU (skipped on machines without CUDA; CI has none).

Run on a GPU machine with ``python -m pytest tests/test_cuda.py``; ``scripts/gpu_check.sh`` runs
it together with the training benchmark.
"""

import pytest
import torch

from idem_md import IDEMSampler, get_energy
from idem_md.dem import GeometricNoiseSchedule, estimate_dem_score
from idem_md.nn import build_score_network
from idem_md.testing import assert_equivariant

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY_E3NN = dict(hidden_irreps="8x0e + 2x1o", n_layers=1, n_radial_basis=4, radial_hidden=8, time_embedding_dim=8)
TINY = dict(batch_size=8, num_mc_samples=16, inner_steps=2, samples_per_outer=8, sde_steps=8, buffer_size=32,
            outer_iterations=2, sample_batch_size=8, network_options=TINY_E3NN)


@pytest.mark.parametrize("name", ["lj13", "lj55", "dw4", "gmm40"])
def test_energy_and_forces_on_cuda_match_cpu_float64(name):
    energy = get_energy(name)
    g = torch.Generator().manual_seed(0)
    if name == "gmm40":
        x = energy.sample(256, generator=g).double()
    else:
        x = 1.1 * torch.randn(256, energy.n_particles, energy.spatial_dim, generator=g, dtype=torch.float64)
        x = x * (energy.n_particles / 13) ** (1 / 3)
    e_ref, f_ref = energy.energy_and_forces(x)
    gpu = get_energy(name).to("cuda")
    for dtype, rtol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        e, f = gpu.energy_and_forces(x.to("cuda", dtype))
        assert e.device.type == "cuda" and f.shape == x.shape
        ok = e_ref.abs() < 1e6  # float32 cannot resolve the r^-12 wall of near-overlaps
        torch.testing.assert_close(e.double().cpu()[ok], e_ref[ok], rtol=rtol, atol=rtol)
        torch.testing.assert_close(f.double().cpu()[ok], f_ref[ok], rtol=rtol, atol=rtol * f_ref[ok].abs().max())


def test_estimator_on_cuda_converges_to_exact_gmm_score():
    from test_dem import SCALE, exact_gmm_noised_score

    gmm = get_energy("gmm40").double().to("cuda")
    schedule = GeometricNoiseSchedule(1e-5, 1.0)
    g = torch.Generator(device="cuda").manual_seed(0)
    B = 256
    t = torch.full((B,), 0.6, dtype=torch.float64, device="cuda")
    x0 = gmm.sample(B).double().to("cuda") / SCALE
    y = x0 + schedule.h(t).sqrt()[:, None] * torch.randn(B, 2, generator=g, dtype=torch.float64, device="cuda")
    exact = exact_gmm_noised_score(gmm, y, schedule.h(t))
    errors = [float((estimate_dem_score(gmm, y[:, None, :], t, schedule, K, coordinate_scale=SCALE,
                                        generator=g).score[:, 0] - exact).norm(dim=1).mean())
              for K in (10, 1000, 20000)]
    assert errors[0] > errors[1] > errors[2], errors


def test_estimator_memory_is_bounded_by_the_chunk_not_by_B_times_K():
    """LJ-13 at the paper's batch and K: a (B, K, n, n, 3) float32 intermediate would take 1.0 GB."""
    lj = get_energy("lj13").to("cuda")
    schedule = GeometricNoiseSchedule(0.01, 2.0)
    B, K, n = 512, 1000, 13
    x_t = torch.randn(B, n, 3, device="cuda")
    t = torch.rand(B, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    est = estimate_dem_score(lj, x_t, t, schedule, K, score_clip=20.0, chunk_size=65536)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    full = B * K * n * n * 3 * 4
    assert torch.isfinite(est.score).all()
    assert peak < full / 2, f"peak {peak / 1e6:.0f} MB vs a full (B, K, n, n, 3) tensor {full / 1e6:.0f} MB"


def test_equivariant_network_on_cuda_float64():
    net = build_score_network("e3nn", 5, 3, **TINY_E3NN).to("cuda", torch.float64)
    t = torch.rand(4, dtype=torch.float64, device="cuda")
    assert_equivariant(lambda x: net(x, t), 5, 3, reflections=True, device="cuda", atol=1e-8, rtol=1e-10)


@pytest.mark.parametrize("system", ["dw4", "gmm40"])
def test_fit_and_sample_on_cuda_then_resume_the_checkpoint_on_cpu_and_back(system, tmp_path):
    opts = dict(TINY)
    if system == "gmm40":
        opts["network_options"] = dict(hidden_dim=16, n_hidden_layers=1, time_embedding_dim=8)
    s = IDEMSampler(system, config=opts, device="cuda")
    assert s.device.type == "cuda"
    s.fit(progress=False)
    out = s.sample(6, progress=False)
    assert out.positions.shape[0] == 6 and torch.isfinite(out.positions).all()
    s.save(tmp_path / "ckpt.pt")
    # A checkpoint written on the GPU resumes on the CPU (and the reverse): weights, buffer and counters
    # carry over; the generator is reseeded because CPU and CUDA generator states differ.
    cpu = IDEMSampler.load(tmp_path / "ckpt.pt", device="cpu")
    assert cpu.counters == s.counters and len(cpu.buffer) == len(s.buffer)
    for a, b in zip(cpu.network.parameters(), s.network.parameters()):
        assert torch.equal(a, b.cpu())
    cpu.fit(outer_iterations=3, progress=False)
    assert cpu.outer_iteration == 3
    cpu.save(tmp_path / "cpu.pt")
    back = IDEMSampler.load(tmp_path / "cpu.pt", device="cuda")
    assert back.outer_iteration == 3 and back.network.parameters().__next__().device.type == "cuda"
