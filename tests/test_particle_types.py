"""The e3nn score network's per-particle type embedding (molecules) and old-checkpoint compatibility."""

from __future__ import annotations

import pytest
import torch

from idem_md.nn import EquivariantScoreNet, build_score_network, score_network_from_config
from idem_md.testing import assert_equivariant

SMALL = dict(hidden_irreps="8x0e + 2x1o", n_layers=1, radial_hidden=8, n_radial_basis=4)
TYPES = (0, 1, 0, 2, 1)


def _net(types=TYPES):
    torch.manual_seed(0)
    return build_score_network("e3nn", 5, 3, particle_types=types, **SMALL).double()


def test_types_keep_e3_equivariance_and_break_permutation_symmetry():
    net = _net()
    t = torch.full((4,), 0.3, dtype=torch.float64)
    assert_equivariant(lambda x: net(x, t), 5, 3, permutations=False, reflections=True)
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    same, other = [2, 1, 0, 3, 4], [1, 0, 2, 3, 4]  # swap two type-0 particles / a type-0 with a type-1
    assert torch.allclose(net(x[:, same], t), net(x, t)[:, same], atol=1e-10)
    assert not torch.allclose(net(x[:, other], t), net(x, t)[:, other], atol=1e-6)


def test_untyped_network_has_the_old_state_dict_and_types_round_trip():
    plain = build_score_network("e3nn", 5, 3, **SMALL)
    assert not any("type_embedding" in k for k in plain.state_dict())
    assert plain.config.particle_types is None
    typed = _net()
    assert any("type_embedding" in k for k in typed.state_dict())
    clone = score_network_from_config(typed.get_config())
    assert clone.config.particle_types == TYPES
    clone.load_state_dict(typed.float().state_dict())
    # a state dict saved before the option existed (no type keys) loads into an untyped network
    old = {k: v for k, v in plain.state_dict().items()}
    build_score_network("e3nn", 5, 3, **SMALL).load_state_dict(old)


def test_bad_particle_types_are_refused_in_one_line():
    with pytest.raises(ValueError, match="one entry per particle \\(5\\), got 2"):
        EquivariantScoreNet(5, 3, dict(particle_types=[0, 1], **SMALL))
    with pytest.raises(ValueError, match="particle_types must be None or a non-empty sequence of ints"):
        EquivariantScoreNet(5, 3, dict(particle_types=[0, -1, 0, 0, 0], **SMALL))
