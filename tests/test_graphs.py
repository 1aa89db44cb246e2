"""CUDA graphs for the reverse SDE's network call (idem_md.nn.graphs, IDEMConfig.cuda_graphs)."""

from __future__ import annotations

import pytest
import torch

from idem_md import IDEMConfig, IDEMSampler
from idem_md.nn.graphs import GraphedScore, graphed_or_eager

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
TINY_E3NN = dict(hidden_irreps="8x0e + 2x1o", n_layers=1, n_radial_basis=4, radial_hidden=8, time_embedding_dim=8)
TINY = dict(batch_size=8, num_mc_samples=16, inner_steps=2, samples_per_outer=8, sde_steps=8, buffer_size=32,
            outer_iterations=1, sample_batch_size=16, network_options=TINY_E3NN)


def test_graphs_refuse_a_cpu_device_and_bad_arguments():
    with pytest.raises(ValueError, match="device must be a CUDA device"):
        GraphedScore(lambda x, t: -x, device="cpu")
    with pytest.raises(TypeError, match="cuda_graphs must be a bool"):
        IDEMConfig(cuda_graphs="yes")


def test_cuda_graphs_on_a_cpu_leave_sampling_unchanged_with_a_warning():
    fn = lambda x, t: -x  # noqa: E731
    assert graphed_or_eager(fn, torch.device("cpu"), enabled=False) is fn
    with pytest.warns(RuntimeWarning, match="no effect on device cpu"):
        assert graphed_or_eager(fn, torch.device("cpu"), enabled=True) is fn
    plain = IDEMSampler("dw4", IDEMConfig(**TINY, seed=3))
    graphed = IDEMSampler("dw4", IDEMConfig(**TINY, seed=3, cuda_graphs=True))
    graphed.network.load_state_dict(plain.network.state_dict())
    a = plain.sample(16, compute_energies=False, progress=False).positions
    with pytest.warns(RuntimeWarning, match="no effect"):
        b = graphed.sample(16, compute_energies=False, progress=False).positions
    assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


@needs_cuda
@pytest.mark.parametrize("system", ["dw4", "lj13"])
def test_graph_replay_equals_the_eager_network(system):
    sampler = IDEMSampler(system, IDEMConfig(**TINY), device="cuda")
    graphed = GraphedScore(sampler.score, "cuda")
    for batch in (16, 16, 7):  # a second shape gets its own graph
        x = torch.randn(batch, *sampler.event_shape, device="cuda")
        t = torch.rand(batch, device="cuda")
        torch.testing.assert_close(graphed(x, t), sampler.score(x, t), rtol=1e-5, atol=1e-5)
    assert graphed.captures == 2 and graphed.replays == 3 and not graphed.eager


@needs_cuda
def test_a_score_that_cannot_be_captured_falls_back_to_eager_with_a_warning():
    def syncing(x, t):
        return -x * float(t.mean().item())  # a host synchronisation: not capturable

    graphed = GraphedScore(syncing, "cuda")
    x, t = torch.randn(4, 3, 2, device="cuda"), torch.full((4,), 0.5, device="cuda")
    with pytest.warns(RuntimeWarning, match="capture of the score failed"):
        out = graphed(x, t)
    torch.testing.assert_close(out, -0.5 * x)
    assert graphed.eager
