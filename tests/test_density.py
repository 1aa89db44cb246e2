"""Tests of the flow-matching CNF density (idem_md.dem.density) and its EGNN (idem_md.nn.egnn)."""

from __future__ import annotations

import dataclasses
import io
import math
import time

import pytest
import torch

from idem_md.dem.density import DensityConfig, DensityModel
from idem_md.dem.sde import remove_mean
from idem_md.nn.egnn import EGNNConfig, EGNNVectorField
from idem_md.testing import assert_equivariant

F64 = torch.float64
STD = 1.7  # of the mean-free particle Gaussian, per subspace coordinate
N, D = 4, 2  # DW-4 sized
DOF = (N - 1) * D


def _mean_free_gaussian(n: int, seed: int) -> torch.Tensor:
    return remove_mean(STD * torch.randn(n, N, D, generator=torch.Generator().manual_seed(seed)))


def _mean_free_gaussian_log_prob(x: torch.Tensor) -> torch.Tensor:
    """Exact log density on the (n-1) d dimensional mean-free subspace."""
    x = remove_mean(x)
    return -(x * x).flatten(1).sum(1) / (2 * STD**2) - 0.5 * DOF * math.log(2 * math.pi * STD**2)


@pytest.fixture(scope="module")
def particle_model() -> DensityModel:
    """EGNN flow fitted briefly (~5 s) to a mean-free Gaussian of 4 particles in 2D."""
    model = DensityModel(N, D, mean_free=True, config=DensityConfig(steps=300, hidden_dim=32, n_layers=2))
    losses = model.fit(_mean_free_gaussian(4000, seed=1), progress=False)
    assert len(losses) == 300 and losses[-1] < losses[0]
    return model


@pytest.fixture(scope="module")
def particle_model64(particle_model) -> DensityModel:
    return DensityModel.from_payload(particle_model.to_payload()).to(F64)


# ----------------------------------------------------------------------------- EGNN
@pytest.mark.parametrize("n, d", [(4, 2), (5, 3)])
def test_egnn_is_equivariant_translation_invariant_and_mean_free(n, d):
    torch.manual_seed(0)
    net = EGNNVectorField(n, d, EGNNConfig(hidden_dim=16, n_layers=2)).to(F64)
    t = torch.rand(4, dtype=F64)
    assert_equivariant(lambda x: net(x, t), n, d, reflections=True, atol=1e-10, rtol=1e-8)


def test_egnn_supports_double_backward():
    torch.manual_seed(0)
    net = EGNNVectorField(3, 2, EGNNConfig(hidden_dim=8, n_layers=2)).to(F64)
    x = torch.randn(2, 3, 2, dtype=F64, requires_grad=True)
    t = torch.rand(2, dtype=F64)
    assert torch.autograd.gradgradcheck(lambda x: net(x, t), (x,))


def test_egnn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_particles"):
        EGNNVectorField(1, 3)
    with pytest.raises(ValueError, match="hidden_dim"):
        EGNNConfig(hidden_dim=0)
    with pytest.raises(ValueError, match="activation"):
        EGNNConfig(activation="swish")
    with pytest.raises(ValueError, match="x must have shape"):
        EGNNVectorField(4, 2)(torch.zeros(3, 4, 3), torch.zeros(3))


# ----------------------------------------------------------------------------- density: known answers
def test_particle_density_is_normalised_on_the_mean_free_subspace(particle_model):
    # A Jacobian slip (dof = n d instead of (n-1) d, or a missing -dof log(scale)) is off by
    # >= 0.9 nat; the fitted flow matches the exact density to ~0.01 nat on average.
    x = _mean_free_gaussian(500, seed=2) + 3.0  # a shifted centre of mass must not matter
    err = particle_model.log_prob(x) - _mean_free_gaussian_log_prob(x)
    assert abs(float(err.mean())) < 0.05, float(err.mean())
    assert float(err.abs().median()) < 0.1, float(err.abs().median())


def test_samples_come_with_their_log_density(particle_model, particle_model64):
    # The solves run at atol = rtol = 1e-5 on |log q| ~ 10: forward and backward agree to ~3e-4
    # nat in float64, ~1e-3 in float32; a Jacobian slip in either direction costs >= 0.1 nat.
    for model, n, tol in ((particle_model, 200, 3e-3), (particle_model64, 64, 1e-3)):
        xs, log_q = model.sample_with_log_prob(n, batch_size=128, generator=torch.Generator().manual_seed(3))
        assert xs.shape == (n, N, D) and log_q.shape == (n,) and log_q.dtype == model.scale.dtype
        assert float(xs.mean(1).abs().max()) < 1e-5  # mean free
        assert float((model.log_prob(xs) - log_q).abs().max()) < tol
        # Samples of q: E_q[log q - log p] = KL(q || p) >= 0 and small for a good fit.
        kl = float((log_q - _mean_free_gaussian_log_prob(xs)).mean())
        assert -0.05 < kl < 0.05, kl


def test_one_dimensional_mixture_nll():
    # Two well separated modes: the NLL of exact samples is within 0.15 nat of the truth (measured:
    # 0.06 nat after 600 steps at lr 3e-3; the default lr 1e-3 needs ~2000 steps for that).
    g = torch.Generator().manual_seed(0)
    means, s = torch.tensor([-2.0, 2.0]), 0.5

    def draw(n):
        return (means[torch.randint(2, (n,), generator=g)] + s * torch.randn(n, generator=g)).view(n, 1, 1)

    def log_p(x):
        x = x.view(-1, 1)
        return torch.logsumexp(-0.5 * ((x - means) / s) ** 2, dim=1) - math.log(2 * s * math.sqrt(2 * math.pi))

    model = DensityModel(1, 1, mean_free=False, config=DensityConfig(steps=600, hidden_dim=64, n_layers=3, lr=3e-3))
    model.fit(draw(8000), progress=False)
    x = draw(2000)
    nll_model, nll_true = -float(model.log_prob(x).mean()), -float(log_p(x).mean())
    assert abs(nll_model - nll_true) < 0.15, (nll_model, nll_true)


@pytest.mark.slow
def test_gmm40_nll_from_exact_samples():
    """The CNF route on exact GMM-40 samples recovers the NLL within 0.3 nat of the truth.

    Measured (1 thread): fit ~65 s, NLL 7.110 vs true 6.901 (error 0.21 nat); 3000 steps give 0.29,
    the default lr 1e-3 with 2000 steps 0.89, and without Fourier features 1.5.
    """
    from idem_md.energies import get_energy

    energy = get_energy("gmm40")
    g = torch.Generator().manual_seed(1)
    cfg = DensityConfig(steps=4000, hidden_dim=128, n_layers=4, lr=3e-3, fourier_features=6)
    model = DensityModel(1, 2, mean_free=False, config=cfg)
    model.fit(energy.sample(20_000, generator=g).view(-1, 1, 2), progress=False)
    x = energy.sample(1000, generator=g)
    nll_model, nll_true = -float(model.log_prob(x.view(-1, 1, 2)).mean()), -float(energy.log_prob(x).mean())
    assert abs(nll_model - nll_true) < 0.3, (nll_model, nll_true)


# ----------------------------------------------------------------------------- gradients, failures, payloads
def test_log_prob_and_grad_matches_finite_differences(particle_model64):
    x = _mean_free_gaussian(3, seed=4).to(F64)
    log_q, grad = particle_model64.log_prob_and_grad(x)
    assert torch.allclose(log_q, particle_model64.log_prob(x), atol=1e-8)
    assert float(grad.sum(1).abs().max()) < 1e-10  # mean-free projected
    h = 1e-4
    for i, j in [(0, 0), (1, 1), (2, 3)]:  # (configuration, flat coordinate)
        e = torch.zeros(N * D, dtype=F64)
        e[j] = h
        e = e.view(N, D)
        fd = (particle_model64.log_prob(x[i:i + 1] + e) - particle_model64.log_prob(x[i:i + 1] - e)) / (2 * h)
        expected = remove_mean(grad[i:i + 1]).flatten()[j]  # FD along e_j sees only its mean-free part
        assert abs(float(fd) - float(expected)) < 1e-3 * (1 + abs(float(expected))), (float(fd), float(expected))


def test_failed_rows_are_nan_and_kept(particle_model):
    x = _mean_free_gaussian(5, seed=5)
    x[2, 1, 0] = float("nan")
    log_q = particle_model.log_prob(x)
    assert log_q.shape == (5,) and torch.isnan(log_q[2]) and bool(torch.isfinite(log_q[[0, 1, 3, 4]]).all())
    _, grad = particle_model.log_prob_and_grad(x)
    assert bool(torch.isnan(grad[2]).all()) and bool(torch.isfinite(grad[[0, 1, 3, 4]]).all())


def test_solver_failure_in_one_row_is_isolated():
    model = DensityModel(1, 1, mean_free=False, config=DensityConfig(steps=5, hidden_dim=8, n_layers=1))
    model.fit(torch.randn(64, 1, 1), progress=False)
    class Poisoned(torch.nn.Module):  # blows up for z > 3 only
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, z, t):
            v = self.inner(z, t)
            return v + torch.where(z > 3.0, float("inf"), 0.0)

    model.field = Poisoned(model.field)
    x = torch.tensor([0.0, 0.5, 100.0, -1.0]).view(4, 1, 1) * model.scale
    log_q = model.log_prob(x)
    assert torch.isnan(log_q[2]) and bool(torch.isfinite(log_q[[0, 1, 3]]).all())


def test_payload_round_trip_is_weights_only_safe(particle_model):
    buf = io.BytesIO()
    torch.save(particle_model.to_payload(), buf)
    buf.seek(0)
    restored = DensityModel.from_payload(torch.load(buf, weights_only=True))
    assert restored.config == particle_model.config and float(restored.scale) == float(particle_model.scale)
    x = _mean_free_gaussian(4, seed=6)
    assert torch.equal(restored.log_prob(x), particle_model.log_prob(x))


def test_hutchinson_divergence_is_unbiased(particle_model):
    hutch = DensityModel(N, D, True, dataclasses.replace(particle_model.config, divergence="hutchinson",
                                                         hutchinson_probes=2))
    hutch.load_state_dict(particle_model.state_dict())
    x = _mean_free_gaussian(300, seed=7)
    diff = hutch.log_prob(x) - particle_model.log_prob(x)
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(300) + 1e-3
    assert float(diff.std()) > 0  # it is an estimate


def test_proposal_progress_bar_follows_the_flow_time_and_changes_nothing(particle_model, capsys):
    kw = dict(batch_size=40, generator=None)
    quiet = particle_model.sample_with_log_prob(100, **{**kw, "generator": torch.Generator().manual_seed(5)})
    shown = particle_model.sample_with_log_prob(100, progress=True, **{**kw, "generator": torch.Generator().manual_seed(5)})
    for a, b in zip(quiet, shown):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    err = capsys.readouterr().err
    assert "CNF proposals (dopri5)" in err and "100/100" in err, err
    # the hook sees every field evaluation's flow time, from 0 to at least 1 (dopri5 may step past t = 1
    # and interpolate back)
    seen = []
    particle_model._solve(particle_model._prior_sample(8, None), 0.0, 1.0, False, None, on_time=seen.append)
    assert len(seen) > 6 and seen[0] == 0.0 and min(seen) >= 0.0 and max(seen) >= 1.0


def test_bad_arguments_give_one_line_errors(particle_model):
    cases = [
        (ValueError, "steps", lambda: DensityConfig(steps=-1)),
        (ValueError, "network", lambda: DensityConfig(network="transformer")),
        (ValueError, "divergence", lambda: DensityConfig(divergence="approx")),
        (ValueError, "lr", lambda: DensityConfig(lr=0.0)),
        (ValueError, "network='egnn'", lambda: DensityModel(2, 2, False, DensityConfig(network="egnn"))),
        (ValueError, "n_particles", lambda: DensityModel(1, 3, True)),
        (TypeError, "config", lambda: DensityModel(2, 2, True, config=3)),
        (ValueError, "x must have shape", lambda: particle_model.log_prob(torch.zeros(3, 4, 3))),
        (TypeError, "x must be a torch.Tensor", lambda: particle_model.log_prob([[0.0]])),
        (TypeError, "floating-point", lambda: particle_model.log_prob(torch.zeros(3, 4, 2, dtype=torch.long))),
        (ValueError, "x must hold", lambda: DensityModel(4, 2, True).fit(torch.full((8, 4, 2), float("nan")))),
        (ValueError, "n must be", lambda: particle_model.sample_with_log_prob(-1)),
        (TypeError, "progress must be a bool", lambda: particle_model.sample_with_log_prob(2, progress="yes")),
        (RuntimeError, "not fitted", lambda: DensityModel(4, 2, True).log_prob(torch.zeros(1, 4, 2))),
        (ValueError, "payload", lambda: DensityModel.from_payload({"state_dict": {}})),
    ]
    for exc, match, call in cases:
        with pytest.raises(exc, match=match) as info:
            call()
        assert "\n" not in str(info.value), str(info.value)


def test_unfitted_model_needs_no_time():  # sanity bound on construction cost
    t0 = time.perf_counter()
    DensityModel(13, 3, True)
    assert time.perf_counter() - t0 < 2.0
