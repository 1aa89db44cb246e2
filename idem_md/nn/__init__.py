"""Score networks ``s_theta(x_t, t)`` for iDEM.

Every network maps ``x`` of shape ``(B, n_particles, spatial_dim)`` and ``t`` of
shape ``(B,)`` (diffusion time in [0, 1]) to a tensor shaped like ``x``:

* ``"e3nn"``: :class:`EquivariantScoreNet`, E(3)-equivariant and centre-of-mass
  free, for particle systems (DW-4, LJ-13, LJ-55);
* ``"mlp"``: :class:`MLPScoreNet`, a plain MLP, for GMM-40.

e3nn is imported only when an equivariant network is built.

Examples
--------
>>> import torch
>>> net = build_score_network("mlp", 1, 2, hidden_dim=64)
>>> net(torch.randn(8, 1, 2), torch.rand(8)).shape
torch.Size([8, 1, 2])
>>> score_network_from_config(net.get_config()).config.hidden_dim
64
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch

from .embeddings import SinusoidalTimeEmbedding
from .equivariant import EquivariantScoreNet, EquivariantScoreNetConfig
from .mlp import MLPScoreNet, MLPScoreNetConfig

__all__ = [
    "SinusoidalTimeEmbedding",
    "EquivariantScoreNet",
    "EquivariantScoreNetConfig",
    "MLPScoreNet",
    "MLPScoreNetConfig",
    "SCORE_NETWORKS",
    "build_score_network",
    "score_network_from_config",
]

#: kind -> network class (each built from its own config dataclass, in ``_CONFIGS``).
SCORE_NETWORKS: dict[str, type[torch.nn.Module]] = {"e3nn": EquivariantScoreNet, "mlp": MLPScoreNet}
_CONFIGS: dict[str, type] = {"e3nn": EquivariantScoreNetConfig, "mlp": MLPScoreNetConfig}


def _network_class(kind: Any) -> type[torch.nn.Module]:
    if not isinstance(kind, str) or kind.lower() not in SCORE_NETWORKS:
        raise ValueError(f"kind must be one of {sorted(SCORE_NETWORKS)}, got {kind!r}")
    return SCORE_NETWORKS[kind.lower()]


def build_score_network(kind: str, n_particles: int, spatial_dim: int, **overrides: Any) -> torch.nn.Module:
    """Build a score network by kind, with default hyperparameters except ``overrides``.

    Parameters
    ----------
    kind : str
        ``"e3nn"`` (:class:`EquivariantScoreNet`) or ``"mlp"`` (:class:`MLPScoreNet`).
    n_particles : int
        Particles per configuration.
    spatial_dim : int
        Coordinates per particle.
    **overrides
        Fields of the network's config dataclass
        (:class:`EquivariantScoreNetConfig` or :class:`MLPScoreNetConfig`).

    Returns
    -------
    torch.nn.Module
        ``forward(x (B, n_particles, spatial_dim), t (B,)) -> (B, n_particles, spatial_dim)``,
        float32 on the CPU; move it with ``.to(dtype=..., device=...)``.

    Raises
    ------
    ValueError
        Unknown ``kind`` or invalid hyperparameter values.
    TypeError
        An override that is not a field of the config (the message lists the fields).

    Examples
    --------
    >>> net = build_score_network("e3nn", 13, 3, n_layers=2)
    >>> net.config.n_layers
    2
    """
    cls = _network_class(kind)
    config_cls = _CONFIGS[cls.kind]
    fields = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise TypeError(f"unknown override(s) {unknown} for kind {cls.kind!r}; valid: {fields}")
    return cls(n_particles, spatial_dim, config_cls(**overrides))


def score_network_from_config(cfg: Mapping[str, Any]) -> torch.nn.Module:
    """Rebuild an (untrained) network from ``net.get_config()``, e.g. from a checkpoint.

    Parameters
    ----------
    cfg : Mapping
        ``{"kind": ..., "n_particles": ..., "spatial_dim": ..., "config": {...}}``.

    Returns
    -------
    torch.nn.Module
        A network of the same kind and hyperparameters; load weights with
        ``load_state_dict``.
    """
    if not isinstance(cfg, Mapping):
        raise TypeError(f"cfg must be a mapping as returned by get_config(), got {type(cfg).__name__}")
    missing = [k for k in ("kind", "n_particles", "spatial_dim") if k not in cfg]
    if missing:
        raise ValueError(f"cfg is missing key(s) {missing}; expected the output of a network's get_config()")
    return _network_class(cfg["kind"]).from_config(cfg)
