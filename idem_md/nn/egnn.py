r"""E(n)-equivariant graph network (EGNN) vector field ``v(x, t)`` on particle systems.

A compact, pure-torch version of the EGNN of Satorras, Hoogeboom and Welling (2021) as used
by the iDEM code's ``EGNN_dynamics`` for its flow-matching density model. Every layer
updates invariant node features ``h_i`` and positions ``x_i`` from messages over the fully
connected graph,

.. math::

    m_{ij} = \phi_e(h_i, h_j, |x_i - x_j|^2, |x^0_i - x^0_j|^2), \qquad
    x_i \leftarrow x_i + \frac{1}{n-1} \sum_{j \ne i}
        \frac{x_i - x_j}{|x_i - x_j| + 1}\, \phi_x(m_{ij}), \qquad
    h_i \leftarrow h_i + \phi_h\Big(h_i, \frac{1}{n-1} \sum_{j \ne i} m_{ij}\Big),

and the output is ``x^L - x^0`` with its centre of mass removed. Pair tensors are dense,
``(B, n, n, H)``, which is fast for the benchmark sizes (n <= 55). Only pair differences
enter, so the output is translation invariant, rotation/reflection and permutation
equivariant, and mean free. Everything is differentiable twice (``create_graph``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from .embeddings import ScoreNetConfigMixin, SinusoidalTimeEmbedding, check_score_inputs, config_from_mapping

__all__ = ["EGNNConfig", "EGNNVectorField"]

_ACTIVATIONS = {"silu": torch.nn.SiLU, "gelu": torch.nn.GELU, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}


@dataclass(frozen=True)
class EGNNConfig:
    """Hyperparameters of :class:`EGNNVectorField`.

    Parameters
    ----------
    hidden_dim : int
        Width ``H`` of node features and messages.
    n_layers : int
        Number of message-passing layers.
    time_embedding_dim : int
        Sinusoidal time features (even), mapped to the initial node features.
    activation : str
        One of ``"silu"``, ``"gelu"``, ``"relu"``, ``"tanh"``.
    time_embedding_scale : float
        Highest angular frequency of the time features (rad per unit of flow time). Keep it
        small: an ODE solver needs a field that is smooth in time.
    time_embedding_max_period : float
        Ratio of the highest to the lowest time frequency (> 1).
    attention : bool
        Gate every message by ``sigmoid(Linear(m_ij))``.
    coords_range : float
        With ``tanh``, bound on each pair's coordinate weight ``phi_x`` (iDEM: 15).
    tanh : bool
        Squash ``phi_x`` with ``coords_range * tanh``, which keeps early training stable.
    """

    hidden_dim: int = 64
    n_layers: int = 4
    time_embedding_dim: int = 16
    activation: str = "silu"
    time_embedding_scale: float = 10.0
    time_embedding_max_period: float = 100.0
    attention: bool = True
    coords_range: float = 15.0
    tanh: bool = True

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "n_layers", "time_embedding_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.time_embedding_dim % 2:
            raise ValueError(f"time_embedding_dim must be even, got {self.time_embedding_dim}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        for name, low in (("time_embedding_scale", 0.0), ("coords_range", 0.0), ("time_embedding_max_period", 1.0)):
            s = getattr(self, name)
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s > low):
                raise ValueError(f"{name} must be a finite float > {low:g}, got {s!r}")
        for name in ("attention", "tanh"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")


class _EGNNLayer(torch.nn.Module):
    """One equivariant message-passing layer on dense pair tensors."""

    def __init__(self, cfg: EGNNConfig):
        super().__init__()
        H, act = cfg.hidden_dim, _ACTIVATIONS[cfg.activation]
        self.cfg = cfg
        # First edge Linear on concat(h_i, h_j, d2, d2_0), split so that the node terms are
        # computed per node, (B, n, H), and only broadcast to pairs.
        self.edge_src = torch.nn.Linear(H, H)
        self.edge_dst = torch.nn.Linear(H, H, bias=False)
        self.edge_dist = torch.nn.Linear(2, H, bias=False)
        self.edge_out = torch.nn.Sequential(act(), torch.nn.Linear(H, H), act())
        self.att = torch.nn.Linear(H, 1) if cfg.attention else None
        self.node = torch.nn.Sequential(torch.nn.Linear(2 * H, H), act(), torch.nn.Linear(H, H))
        # phi_x is one Linear on the (already two-layer) message: a hidden layer on the dense
        # pair tensor would cost as much as the whole edge MLP on the CPU.
        self.coord = torch.nn.Linear(H, 1, bias=False)
        torch.nn.init.xavier_uniform_(self.coord.weight, gain=1e-3)  # start near the identity map on x

    def forward(self, h, x, d2_0, mask):
        n = x.shape[1]
        diff = x[:, :, None, :] - x[:, None, :, :]  # (B, n, n, d), x_i - x_j
        d2 = (diff * diff).sum(-1, keepdim=True)  # (B, n, n, 1)
        pre = self.edge_src(h)[:, :, None, :] + self.edge_dst(h)[:, None, :, :]  # (B, n, n, H)
        m = self.edge_out(pre + self.edge_dist(torch.cat([d2, d2_0], dim=-1)))  # (B, n, n, H)
        gate = mask if self.att is None else torch.sigmoid(self.att(m)) * mask  # (B, n, n, 1), no self messages
        m = m * gate  # (B, n, n, H)
        phi = self.coord(m)  # (B, n, n, 1)
        if self.cfg.tanh:
            phi = self.cfg.coords_range * torch.tanh(phi)
        unit = diff / (torch.sqrt(d2 + 1e-8) + 1.0)  # (B, n, n, d)
        x = x + (unit * (phi * mask)).sum(2) / (n - 1)  # (B, n, d)
        h = h + self.node(torch.cat([h, m.sum(2) / (n - 1)], dim=-1))  # (B, n, H)
        return h, x


class EGNNVectorField(ScoreNetConfigMixin, torch.nn.Module):
    """E(n)-equivariant, mean-free vector field ``v(x, t)`` of shape ``(B, n, d)``.

    Parameters
    ----------
    n_particles : int
        Particles per configuration (>= 2).
    spatial_dim : int
        Coordinates per particle (>= 1).
    config : EGNNConfig, mapping or None
        Hyperparameters (None: defaults).

    Examples
    --------
    >>> import torch
    >>> net = EGNNVectorField(4, 2, EGNNConfig(hidden_dim=16, n_layers=2))
    >>> v = net(torch.randn(3, 4, 2), torch.rand(3))
    >>> v.shape
    torch.Size([3, 4, 2])
    >>> bool(v.sum(dim=1).abs().max() < 1e-6)  # mean free
    True
    >>> EGNNVectorField.from_config(net.get_config()).config == net.config
    True
    """

    kind = "egnn"

    def __init__(self, n_particles: int, spatial_dim: int, config: EGNNConfig | Mapping[str, Any] | None = None):
        super().__init__()
        for name, v, low in (("n_particles", n_particles, 2), ("spatial_dim", spatial_dim, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim
        self.config = cfg = config_from_mapping(EGNNConfig, config)
        self.time_embedding = SinusoidalTimeEmbedding(
            cfg.time_embedding_dim, scale=cfg.time_embedding_scale, max_period=cfg.time_embedding_max_period
        )
        self.embed = torch.nn.Linear(cfg.time_embedding_dim, cfg.hidden_dim)
        self.layers = torch.nn.ModuleList(_EGNNLayer(cfg) for _ in range(cfg.n_layers))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Vector field at positions ``x`` and flow times ``t``.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, n_particles, spatial_dim)`` positions (any length unit; the network is
            tuned for O(1) inputs).
        t : torch.Tensor
            ``(B,)`` times in [0, 1] (a scalar is broadcast).

        Returns
        -------
        torch.Tensor
            ``(B, n_particles, spatial_dim)``, mean free over particles.
        """
        x, t = check_score_inputs(self, x, t, self.n_particles, self.spatial_dim)
        n = self.n_particles
        x0 = x - x.mean(dim=1, keepdim=True)  # (B, n, d)
        diff0 = x0[:, :, None, :] - x0[:, None, :, :]  # (B, n, n, d)
        d2_0 = (diff0 * diff0).sum(-1, keepdim=True)  # (B, n, n, 1)
        mask = (1.0 - torch.eye(n, dtype=x.dtype, device=x.device))[None, :, :, None]  # (1, n, n, 1)
        h = self.embed(self.time_embedding(t))[:, None, :].expand(-1, n, -1)  # (B, n, H), identical particles
        xl = x0
        for layer in self.layers:
            h, xl = layer(h, xl, d2_0, mask)
        v = xl - x0  # (B, n, d)
        return v - v.mean(dim=1, keepdim=True)

    def extra_repr(self) -> str:
        return f"n_particles={self.n_particles}, spatial_dim={self.spatial_dim}"
