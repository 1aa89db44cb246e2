"""MLP score network for low-dimensional, non-particle targets (GMM-40), optionally with Fourier
coordinate features and residual blocks as in the iDEM code's GMM network."""

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
    coordinate_embedding_dim : int
        0: the MLP sees the (scaled) coordinates themselves. Otherwise each
        coordinate is replaced by this many sinusoidal features (even), as in the
        iDEM code's GMM network; fixed Fourier features let a small MLP resolve
        modes much narrower than the domain (a plain MLP's spectral bias makes it
        learn such sharp scores very slowly).
    coordinate_embedding_scale : float
        Highest angular frequency of the coordinate features, per unit of scaled
        coordinate (iDEM: 25); frequencies fall geometrically by 10^4 from it.
    residual : bool
        Hidden layers as ``h + act(W h)`` (iDEM's GMM network) instead of ``act(W h)``.
    coordinate_embedding_damping : bool
        Multiply each coordinate feature of angular frequency ``w`` by ``exp(-w^2 h(t) / 2)``
        (``h`` in scaled coordinates), the factor by which Gaussian noise of variance ``h`` damps
        that frequency in the noised density. Without it the high-frequency features, needed
        to resolve narrow modes at small t, stay at full strength at large t, where the true
        score is nearly linear: small errors in their weights then give the learned field steep
        wiggles (Jacobian eigenvalues far below the ``-1/h`` bound of every noised score).
        Needs the sampler's schedule (:meth:`bind_schedule`, done by
        :class:`~idem_md.IDEMSampler`).
    """

    hidden_dim: int = 128
    n_hidden_layers: int = 3
    time_embedding_dim: int = 32
    activation: str = "silu"
    input_scale: float = 1.0
    coordinate_embedding_dim: int = 0
    coordinate_embedding_scale: float = 25.0
    residual: bool = False
    coordinate_embedding_damping: bool = False

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "n_hidden_layers", "time_embedding_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.time_embedding_dim % 2:
            raise ValueError(f"time_embedding_dim must be even, got {self.time_embedding_dim}")
        c = self.coordinate_embedding_dim
        if isinstance(c, bool) or not isinstance(c, int) or c < 0 or c % 2:
            raise ValueError(f"coordinate_embedding_dim must be 0 or an even positive int, got {c!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        for name in ("input_scale", "coordinate_embedding_scale"):
            s = getattr(self, name)
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s > 0):
                raise ValueError(f"{name} must be a finite positive float, got {s!r}")
        for name in ("residual", "coordinate_embedding_damping"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        if self.coordinate_embedding_damping and not self.coordinate_embedding_dim:
            raise ValueError("coordinate_embedding_damping needs coordinate features: set coordinate_embedding_dim > 0")


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
    >>> fourier = MLPScoreNet(1, 2, dict(coordinate_embedding_dim=128, residual=True))  # GMM-40 preset layout
    >>> fourier.mlp[0].in_features  # 2 coordinates x 128 features + 32 time features
    288
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
        # Coordinates get the same geometric sin/cos features as time, with their own top frequency.
        self.coordinate_embedding = (
            SinusoidalTimeEmbedding(cfg.coordinate_embedding_dim, scale=cfg.coordinate_embedding_scale)
            if cfg.coordinate_embedding_dim else None
        )
        layers: list[torch.nn.Module] = []
        width_in = dim * (cfg.coordinate_embedding_dim or 1) + cfg.time_embedding_dim
        for _ in range(cfg.n_hidden_layers):
            layers += [torch.nn.Linear(width_in, cfg.hidden_dim), act()]
            width_in = cfg.hidden_dim
        layers.append(torch.nn.Linear(width_in, dim))
        # One flat Sequential (Linear, act, ..., Linear): the parameter names of
        # checkpoints written before the residual option existed still load.
        self.mlp = torch.nn.Sequential(*layers)
        self.schedule = None  # set by bind_schedule; needed only with coordinate_embedding_damping

    def bind_schedule(self, schedule: Any) -> None:
        """Keep ``schedule`` (anything with ``h(t)``, working units squared) for the feature damping."""
        self.schedule = schedule

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
        u = x.flatten(1) / self.config.input_scale  # (B, n*d)
        if self.coordinate_embedding is not None:
            u = self.coordinate_embedding(u.flatten()).view(x.shape[0], u.shape[1], -1)  # (B, n*d, C)
            if self.config.coordinate_embedding_damping:
                u = u * self._damping(t)[:, None, :]
            u = u.flatten(1)  # (B, n*d*C)
        h = torch.cat([u, self.time_embedding(t)], dim=-1)  # (B, n*d*C + T)
        *hidden, out = self.mlp
        for i in range(0, len(hidden), 2):
            z = hidden[i + 1](hidden[i](h))  # (B, H)
            h = h + z if self.config.residual and i > 0 else z
        return out(h).view_as(x)

    def _damping(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` factors ``exp(-w^2 h(t) / 2)`` for the sin and cos features of each frequency ``w``."""
        if self.schedule is None:
            raise RuntimeError("coordinate_embedding_damping needs the noise schedule: call "
                               "net.bind_schedule(schedule) (IDEMSampler does it)")
        w = self.coordinate_embedding.frequencies(t.dtype, t.device)  # (C/2,)
        h = self.schedule.h(t) / self.config.input_scale**2  # (B,) scaled coordinates squared
        damp = torch.exp(-0.5 * w**2 * h[:, None])  # (B, C/2)
        return torch.cat([damp, damp], dim=-1)  # (B, C)

    def extra_repr(self) -> str:
        return f"n_particles={self.n_particles}, spatial_dim={self.spatial_dim}"
