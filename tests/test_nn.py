"""Tests of the score networks (idem_md.nn) and the symmetry checks (idem_md.testing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from idem_md.nn import (
    EquivariantScoreNet,
    EquivariantScoreNetConfig,
    MLPScoreNet,
    SinusoidalTimeEmbedding,
    build_score_network,
    score_network_from_config,
)
from idem_md.testing import assert_equivariant, assert_invariant, random_orthogonal

from conftest import require_reference

F64 = torch.float64
SMALL = {"hidden_irreps": "16x0e + 4x1o", "n_layers": 2, "radial_hidden": 32}


def _net(n: int, d: int, dtype=F64, seed: int = 0, **overrides) -> EquivariantScoreNet:
    torch.manual_seed(seed)
    return build_score_network("e3nn", n, d, **overrides).to(dtype)


def _at_time(net, t: float):
    """The network at a fixed time, as a function of x only."""
    return lambda x: net(x, torch.full((x.shape[0],), t, dtype=x.dtype))


# ----------------------------------------------------------------- e3nn conventions
def test_e3nn_l1_irrep_is_cartesian_xyz():
    # The readout interprets the 1o output as (x, y, z); this holds for e3nn >= 0.5
    # (older versions used (y, z, x)). Guard it.
    from e3nn import o3

    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        R = random_orthogonal(3, generator=g)
        # D_from_matrix goes through Euler angles (errors up to ~1e-6 near gimbal lock);
        # another axis order would differ by O(1).
        assert torch.allclose(o3.Irreps("1o").D_from_matrix(R), R, atol=1e-5)
    v = torch.tensor([[0.3, -1.2, 0.5]], dtype=F64)
    sh = o3.spherical_harmonics(1, v, normalize=True, normalization="component")
    assert torch.allclose(sh, 3**0.5 * v / v.norm(), atol=1e-12)


# ------------------------------------------------------------------- equivariance
@pytest.mark.parametrize("n,d", [(5, 3), (4, 2)])
@pytest.mark.parametrize("t", [0.05, 0.7])
def test_equivariant_net_is_e3_equivariant_and_com_free(n, d, t):
    net = _net(n, d)
    # O(3) incl. reflections (intended: parity-respecting irreps), translations, permutations, COM-free.
    assert_equivariant(_at_time(net, t), n, d, reflections=True, atol=1e-9, n_trials=2)


def test_equivariance_on_reference_lj13_configurations():
    path = require_reference("test_split_LJ13.npy")
    x = torch.from_numpy(np.load(path)[:6].astype(np.float64)).reshape(6, 13, 3)
    net = _net(13, 3, **SMALL)
    assert_equivariant(_at_time(net, 0.3), 13, 3, reflections=True, x=x, n_trials=1)


def test_equivariance_survives_float32_round_trip_and_state_dict_load():
    # e3nn's Clebsch-Gordan buffers are restored from float64 masters after .float().double()
    # and after loading a float32 state dict; without that, equivariance drops to ~1e-9.
    net = _net(5, 3, dtype=torch.float32).double()
    assert_equivariant(_at_time(net, 0.4), 5, 3, reflections=True, atol=1e-12, n_trials=1)
    other = _net(5, 3, seed=1)
    other.load_state_dict(_net(5, 3, dtype=torch.float32).state_dict())
    assert_equivariant(_at_time(other, 0.4), 5, 3, reflections=True, atol=1e-12, n_trials=1)


def test_2d_network_has_exactly_zero_z_output():
    net = _net(4, 2)
    x = torch.randn(32, 4, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.rand(32, dtype=F64, generator=torch.Generator().manual_seed(2))
    out3 = net.forward_3d(x, t)
    assert out3.shape == (32, 4, 3)
    # z -> -z fixes planar inputs, so an O(3)-equivariant 1o output has z = -z: exactly 0 (atol 0).
    assert torch.equal(out3[..., 2], torch.zeros_like(out3[..., 2]))
    assert out3[..., :2].abs().max() > 1e-3  # ... while x, y are not trivially zero
    assert torch.equal(net(x, t), out3[..., :2])


def test_3d_network_on_planar_input_keeps_the_plane():
    net = _net(5, 3, **SMALL)
    g = torch.Generator().manual_seed(3)
    planar = torch.nn.functional.pad(torch.randn(8, 5, 2, dtype=F64, generator=g), (0, 1))
    t = torch.full((8,), 0.5, dtype=F64)
    assert torch.equal(net(planar, t)[..., 2], torch.zeros(8, 5, dtype=F64))
    lifted = planar.clone()
    lifted[..., 2] = 0.3 * torch.randn(8, 5, dtype=F64, generator=g)
    assert net(lifted, t)[..., 2].abs().max() > 1e-6  # the zero above is not structural


def test_output_depends_on_time():
    net = _net(4, 2, **SMALL)
    x = torch.randn(3, 4, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    a = net(x, torch.full((3,), 0.1, dtype=F64))
    b = net(x, torch.full((3,), 0.9, dtype=F64))
    assert (a - b).abs().max() > 1e-4


def test_no_python_loop_over_the_batch_rows_are_independent():
    # Row b of a batch gives the same output as row b alone (edges of different graphs never mix).
    net = _net(5, 3, **SMALL)
    g = torch.Generator().manual_seed(5)
    x, t = torch.randn(6, 5, 3, dtype=F64, generator=g), torch.rand(6, dtype=F64, generator=g)
    full = net(x, t)
    for b in (0, 3, 5):
        assert torch.allclose(net(x[b : b + 1], t[b : b + 1]), full[b : b + 1], atol=1e-12)


# ------------------------------------------------------------------ shapes/dtypes
@pytest.mark.parametrize("B", [1, 7])
def test_equivariant_net_shapes(B):
    net = _net(13, 3, **SMALL)
    out = net(torch.randn(B, 13, 3, dtype=F64), torch.rand(B, dtype=F64))
    assert out.shape == (B, 13, 3) and out.dtype == F64
    assert net(torch.randn(B, 13, 3, dtype=F64), 0.5).shape == (B, 13, 3)  # scalar t broadcasts


def test_equivariant_net_float32():
    net = _net(4, 3, dtype=torch.float32, **SMALL)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    out = net(torch.randn(5, 4, 3), torch.rand(5))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert_equivariant(_at_time(net, 0.3), 4, 3, reflections=True, dtype=torch.float32, atol=1e-4, n_trials=1)


def test_bad_inputs_raise_clear_errors():
    net = _net(4, 2, **SMALL)
    x, t = torch.randn(3, 4, 2, dtype=F64), torch.rand(3, dtype=F64)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4, 2\)"):
        net(torch.randn(3, 8, dtype=F64), t)
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        net(x, torch.rand(4, dtype=F64))
    with pytest.raises(TypeError, match="parameters are torch.float64"):
        net(x.float(), t)
    with pytest.raises(ValueError, match="n_particles"):
        EquivariantScoreNet(1, 3)
    with pytest.raises(ValueError, match="spatial_dim"):
        EquivariantScoreNet(4, 1)
    with pytest.raises(ValueError, match="hidden_irreps"):
        EquivariantScoreNetConfig(hidden_irreps="16x0e")  # no 1o: cannot output vectors
    with pytest.raises(ValueError, match="radial_max"):
        EquivariantScoreNetConfig(radial_max=-1.0)


def test_gradients_flow_to_all_parameters_and_inputs():
    net = _net(5, 3, **SMALL)
    x = torch.randn(4, 5, 3, dtype=F64, requires_grad=True)
    t = torch.rand(4, dtype=F64)
    net(x, t).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, f"no gradient reaches {name}"
    assert x.grad is not None and x.grad.abs().max() > 0


# --------------------------------------------------------------------------- MLP
def test_mlp_shapes_time_dependence_and_gradients():
    torch.manual_seed(0)
    net = build_score_network("mlp", 1, 2)
    assert net.config.hidden_dim == 128 and net.config.n_hidden_layers == 3
    x = torch.randn(16, 1, 2, requires_grad=True)
    out = net(x, torch.rand(16))
    assert out.shape == (16, 1, 2) and out.dtype == torch.float32
    assert (net(x, torch.zeros(16)) - net(x, torch.ones(16))).abs().max() > 1e-4
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters()) and x.grad.abs().max() > 0
    net64 = net.double()
    assert net64(torch.randn(3, 1, 2, dtype=F64), torch.rand(3, dtype=F64)).dtype == F64
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 2\)"):
        net64(torch.randn(3, 2, dtype=F64), torch.rand(3, dtype=F64))
    scaled = build_score_network("mlp", 1, 2, input_scale=40.0).double()
    scaled.load_state_dict(net64.state_dict())
    x = torch.randn(3, 1, 2, dtype=F64)
    assert torch.allclose(scaled(40.0 * x, 0.5), net64(x, 0.5), atol=1e-12)
    with pytest.raises(ValueError, match="input_scale"):
        build_score_network("mlp", 1, 2, input_scale=0.0)



def test_mlp_coordinate_feature_damping_follows_the_noise_level():
    """Damped features: unchanged where h(t) ~ 0, each frequency w scaled by exp(-w^2 h / 2) otherwise, so at
    large h only the low frequencies are left and the field's Jacobian shrinks by orders of magnitude."""
    from idem_md.dem.schedule import GeometricNoiseSchedule

    torch.manual_seed(0)
    opts = dict(coordinate_embedding_dim=32, coordinate_embedding_scale=100.0, residual=True)
    plain = build_score_network("mlp", 1, 2, **opts).double()
    damped = build_score_network("mlp", 1, 2, coordinate_embedding_damping=True, **opts).double()
    damped.load_state_dict(plain.state_dict())
    x = torch.randn(64, 1, 2, dtype=F64) * 0.5
    with pytest.raises(RuntimeError, match="bind_schedule"):
        damped(x, torch.zeros(64, dtype=F64))
    schedule = GeometricNoiseSchedule(1e-5, 1.0)
    damped.bind_schedule(schedule)
    t0 = torch.zeros(64, dtype=F64)  # h(0) = 0: no damping at all
    assert torch.allclose(damped(x, t0), plain(x, t0), atol=1e-12)
    # The factors themselves: exp(-w^2 h / 2) for the sin and the cos feature of each frequency.
    t = torch.tensor([0.3, 1.0], dtype=F64)
    w = damped.coordinate_embedding.frequencies(F64)
    expected = torch.exp(-0.5 * w[None] ** 2 * schedule.h(t)[:, None])
    assert torch.allclose(damped._damping(t), torch.cat([expected, expected], -1))

    def jacobian_norm(net, t_value):
        xs = x.clone().requires_grad_(True)
        out = net(xs, torch.full((64,), t_value, dtype=F64))
        (g,) = torch.autograd.grad(out[:, 0, 0].sum(), xs)
        return float(g.norm(dim=-1).median())

    assert jacobian_norm(damped, 1.0) < 0.01 * jacobian_norm(plain, 1.0)
    with pytest.raises(ValueError, match="coordinate_embedding_damping needs coordinate features"):
        build_score_network("mlp", 1, 2, coordinate_embedding_damping=True)


def test_mlp_fourier_coordinate_features_and_residual_blocks():
    torch.manual_seed(0)
    net = build_score_network("mlp", 1, 2, coordinate_embedding_dim=16, residual=True).double()
    assert net.mlp[0].in_features == 2 * 16 + net.config.time_embedding_dim
    x, t = torch.randn(4, 1, 2, dtype=F64), torch.rand(4, dtype=F64)
    # The coordinate features are sin/cos of x at fixed frequencies, the highest being
    # coordinate_embedding_scale: shifting one coordinate by a full period of every
    # frequency is impossible, but a tiny shift must change the output smoothly.
    eps = 1e-6
    dx = torch.zeros_like(x)
    dx[:, 0, 0] = eps
    assert 0 < (net(x + dx, t) - net(x, t)).abs().max() < 1e-3
    # The residual path: with every hidden Linear zeroed, a residual block is the identity
    # while a plain one maps to act(0) = 0, so the two networks must then differ.
    plain = build_score_network("mlp", 1, 2, coordinate_embedding_dim=16, residual=False).double()
    plain.load_state_dict(net.state_dict())
    with torch.no_grad():
        for m in (net.mlp[2], net.mlp[4], plain.mlp[2], plain.mlp[4]):
            m.weight.zero_()
            m.bias.zero_()
    h1 = torch.nn.functional.silu(net.mlp[0](torch.cat(
        [net.coordinate_embedding(x.flatten()).view(4, -1), net.time_embedding(t)], -1)))
    assert torch.allclose(net(x, t)[:, 0], net.mlp[-1](h1), atol=1e-12)
    assert torch.allclose(plain(x, t)[:, 0], net.mlp[-1](torch.zeros_like(h1)), atol=1e-12)
    for bad in (3, -2):
        with pytest.raises(ValueError, match="coordinate_embedding_dim"):
            build_score_network("mlp", 1, 2, coordinate_embedding_dim=bad)
    with pytest.raises(ValueError, match="coordinate_embedding_scale"):
        build_score_network("mlp", 1, 2, coordinate_embedding_scale=float("nan"))
    with pytest.raises(TypeError, match="residual"):
        build_score_network("mlp", 1, 2, residual=1)

# ---------------------------------------------------------------- build / config
def test_build_score_network_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        build_score_network("egnn", 4, 2)
    with pytest.raises(TypeError, match=r"unknown override\(s\) \['hidden_dims'\]"):
        build_score_network("mlp", 1, 2, hidden_dims=3)
    with pytest.raises(TypeError, match="valid"):
        build_score_network("e3nn", 4, 2, hidden_dim=3)  # an MLP field


@pytest.mark.parametrize("kind,n,d", [("e3nn", 4, 2), ("mlp", 1, 2)])
def test_config_round_trip_rebuilds_same_network(kind, n, d):
    overrides = SMALL if kind == "e3nn" else {"hidden_dim": 32}
    net = build_score_network(kind, n, d, **overrides).double()
    clone = score_network_from_config(net.get_config()).double()
    assert type(clone) is type(net) and clone.config == net.config
    clone.load_state_dict(net.state_dict())
    x, t = torch.randn(3, n, d, dtype=F64), torch.rand(3, dtype=F64)
    assert torch.equal(clone(x, t), net(x, t))
    with pytest.raises(ValueError, match="not 'mlp'"):
        MLPScoreNet.from_config({**net.get_config(), "kind": "e3nn"})


def test_time_embedding():
    emb = SinusoidalTimeEmbedding(8)
    t = torch.tensor([0.0, 0.25, 1.0], dtype=F64)
    e = emb(t)
    assert e.shape == (3, 8) and e.dtype == F64
    assert torch.equal(e[0], torch.tensor([0.0] * 4 + [1.0] * 4, dtype=F64))
    assert torch.allclose(e[:, :4] ** 2 + e[:, 4:] ** 2, torch.ones(3, 4, dtype=F64))
    assert len({tuple(r.tolist()) for r in e}) == 3  # distinct times, distinct features
    with pytest.raises(ValueError, match="dim must be an even int"):
        SinusoidalTimeEmbedding(7)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        emb(torch.zeros(2, 2))


# ------------------------------------------------------------ the checkers themselves
def _centred(x):
    return x - x.mean(dim=1, keepdim=True)


def _chiral(x):  # rotation- but not reflection-equivariant (a pseudovector field)
    r = x[:, None, :, :] - x[:, :, None, :]  # (B, n, n, 3), x_j - x_i
    a, b = r.sum(dim=2), (r * r.norm(dim=-1, keepdim=True)).sum(dim=2)
    return _centred(torch.linalg.cross(a, b))


_BROKEN = {
    # name: (function, symmetry expected to fail, dimension); each breaks exactly one property
    "anisotropic": (lambda x: _centred(x) * torch.tensor([1.0, 2.0, 3.0], dtype=x.dtype), "rotation", 3),
    "chiral": (_chiral, "reflection", 3),
    "origin-aware": (lambda x: _centred(x) * x.mean(dim=1, keepdim=True).square().sum(-1, keepdim=True),
                     "translation", 3),  # fmt: skip
    "labelled": (lambda x: _centred(_centred(x) * torch.arange(1.0, x.shape[1] + 1, dtype=x.dtype)[:, None]),
                 "permutation", 2),  # fmt: skip
    "com-drifting": (lambda x: _centred(x) * _centred(x).norm(dim=-1, keepdim=True), "centre-of-mass", 2),
}


@pytest.mark.parametrize("name", sorted(_BROKEN))
def test_assert_equivariant_names_the_broken_symmetry(name):
    fn, broken, d = _BROKEN[name]
    with pytest.raises(AssertionError, match=f"^{broken}"):
        assert_equivariant(fn, 5, d, reflections=True)
    # ... and passes when that one check is switched off.
    switches = {"rotation": ["rotations", "reflections"], "reflection": ["reflections"],
                "translation": ["translations"], "permutation": ["permutations"],
                "centre-of-mass": ["com_free"]}[broken]  # fmt: skip
    assert_equivariant(fn, 5, d, **{"reflections": True, **dict.fromkeys(switches, False)})


def test_assert_equivariant_catches_a_constant_shift():
    shift = torch.tensor([0.0, 0.0, 1e-6], dtype=F64)
    with pytest.raises(AssertionError, match=r"max abs error .*e-0"):
        assert_equivariant(lambda x: _centred(x) + shift, 4, 3)
    assert_equivariant(lambda x: _centred(x), 4, 3, reflections=True)


def test_assert_equivariant_rejects_wrong_output_shape():
    with pytest.raises(AssertionError, match="must return a vector field of shape"):
        assert_equivariant(lambda x: x.sum(dim=1), 4, 3)


def test_assert_invariant():
    def pair_energy(x):
        return torch.cdist(x, x).pow(2).sum(dim=(1, 2))

    assert_invariant(pair_energy, 6, 3, reflections=True)
    with pytest.raises(AssertionError, match="^rotation invariance"):
        assert_invariant(lambda x: x[..., 0].square().sum(1) - pair_energy(x), 6, 3)
    with pytest.raises(AssertionError, match="^translation invariance"):
        assert_invariant(lambda x: x.square().sum(dim=(1, 2)), 6, 3)
    with pytest.raises(AssertionError, match="^reflection"):
        # signed volume of a tetrahedron: rotation/translation invariant, odd under reflections
        assert_invariant(lambda x: torch.linalg.det(x[:, 1:4] - x[:, :1]), 6, 3, reflections=True, permutations=False)


def test_assert_invariant_on_reference_dw4_energy():
    path = require_reference("test_split_DW4.npy")
    from idem_md import get_energy

    x = torch.from_numpy(np.load(path)[:8].astype(np.float64)).reshape(8, 4, 2)
    assert_invariant(get_energy("dw4").energy, 4, 2, reflections=True, x=x, n_trials=2, atol=1e-8)


def test_random_orthogonal():
    g = torch.Generator().manual_seed(0)
    for d in (1, 2, 3):
        for det in (1, -1):
            Q = random_orthogonal(d, det=det, generator=g)
            assert torch.allclose(Q.T @ Q, torch.eye(d, dtype=F64), atol=1e-12)
            assert round(float(torch.linalg.det(Q))) == det
    with pytest.raises(ValueError, match="det must be 1 or -1"):
        random_orthogonal(3, det=0)
