"""Plain MLP score network for low-dimensional, non-particle targets (GMM-40)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from .embeddings import ScoreNetConfigMixin, SinusoidalTimeEmbedding, check_score_inputs, config_from_mapping

__all__ = ["MLPScoreNet", "MLPScoreNetConfig"]

_ACTIVATIONS = {"silu": torch.nn.SiLU, "gelu": torch.nn.GELU, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}


@dataclass(frozen=True)
class MLPScoreNetConfig:
    """Hyperparameters of :class:`MLPScoreNet`.

    Parameters
    ----------
    hidden_dim : int
        Width of every hidden layer (iDEM's GMM network: 128).
    n_hidden_layers : int
        Number of hidden layers (iDEM: 3).
    time_embedding_dim : int
        Sinusoidal time features, even.
    activation : str
        One of ``"silu"``, ``"gelu"``, ``"relu"``, ``"tanh"``.
    input_scale : float
        Typical coordinate magnitude, in the target's length unit; positions
        are divided by it before the MLP (GMM-40 spans about +-40, so ~40 keeps
        the first layer's inputs O(1)).
    """

    hidden_dim: int = 128
    n_hidden_layers: int = 3
    time_embedding_dim: int = 32
    activation: str = "silu"
    input_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "n_hidden_layers", "time_embedding_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.time_embedding_dim % 2:
            raise ValueError(f"time_embedding_dim must be even, got {self.time_embedding_dim}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        s = self.input_scale
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s > 0):
            raise ValueError(f"input_scale must be a finite positive float (length unit), got {s!r}")


class MLPScoreNet(ScoreNetConfigMixin, torch.nn.Module):
    """Score network ``s(x, t)`` as an MLP on the flattened coordinates and time features.

    No symmetry is built in, so it suits single-particle targets such as
    GMM-40 (``n_particles=1, spatial_dim=2``); for particle systems use
    :class:`~idem_md.nn.equivariant.EquivariantScoreNet`.

    Parameters
    ----------
    n_particles : int
        Particles per configuration (>= 1).
    spatial_dim : int
        Coordinates per particle (>= 1).
    config : MLPScoreNetConfig, mapping or None
        Hyperparameters (None: defaults).

    Examples
    --------
    >>> import torch
    >>> net = MLPScoreNet(1, 2)
    >>> net(torch.randn(5, 1, 2), torch.rand(5)).shape
    torch.Size([5, 1, 2])
    >>> MLPScoreNet.from_config(net.get_config()).config == net.config
    True
    """

    kind = "mlp"

    def __init__(
        self, n_particles: int, spatial_dim: int, config: MLPScoreNetConfig | Mapping[str, Any] | None = None
    ):
        super().__init__()
        for name, v in (("n_particles", n_particles), ("spatial_dim", spatial_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim
        self.config = cfg = config_from_mapping(MLPScoreNetConfig, config)
        dim = n_particles * spatial_dim
        act = _ACTIVATIONS[cfg.activation]
        self.time_embedding = SinusoidalTimeEmbedding(cfg.time_embedding_dim)
        layers: list[torch.nn.Module] = []
        width_in = dim + cfg.time_embedding_dim
        for _ in range(cfg.n_hidden_layers):
            layers += [torch.nn.Linear(width_in, cfg.hidden_dim), act()]
            width_in = cfg.hidden_dim
        layers.append(torch.nn.Linear(width_in, dim))
        self.mlp = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Score at positions ``x`` and times ``t``.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, n_particles, spatial_dim)`` positions (the target's length unit).
        t : torch.Tensor
            ``(B,)`` diffusion times in [0, 1] (a scalar is broadcast).

        Returns
        -------
        torch.Tensor
            ``(B, n_particles, spatial_dim)``.
        """
        x, t = check_score_inputs(self, x, t, self.n_particles, self.spatial_dim)
        h = torch.cat([x.flatten(1) / self.config.input_scale, self.time_embedding(t)], dim=-1)  # (B, n*d + T)
        return self.mlp(h).view_as(x)

    def extra_repr(self) -> str:
        return f"n_particles={self.n_particles}, spatial_dim={self.spatial_dim}"
