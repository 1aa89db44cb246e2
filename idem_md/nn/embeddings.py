"""Sinusoidal embedding of the diffusion time, and the input/config checks shared by
every score network."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, TypeVar

import torch

__all__ = ["ScoreNetConfigMixin", "SinusoidalTimeEmbedding", "as_time_batch", "check_score_inputs", "config_from_mapping"]

_C = TypeVar("_C")


class SinusoidalTimeEmbedding(torch.nn.Module):
    r"""Transformer/DDPM-style sinusoidal features of a diffusion time.

    For :math:`k = 0, \dots, h-1` with :math:`h = \mathrm{dim}/2`, the frequencies are
    :math:`\omega_k = s \cdot P^{-k/h}` (geometric, from ``scale`` down to
    ``scale / max_period``), and the features are
    :math:`[\sin(\omega_k t), \cos(\omega_k t)]`. With the defaults a time
    :math:`t \in [0, 1]` is treated like a DDPM step index in ``[0, 1000]``.

    The module has no parameters; its output follows the dtype and device of ``t``.

    Parameters
    ----------
    dim : int
        Number of features, even and >= 2.
    scale : float
        Highest angular frequency (rad per unit of t), > 0.
    max_period : float
        Ratio between the highest and the lowest frequency, > 1.

    Examples
    --------
    >>> import torch
    >>> emb = SinusoidalTimeEmbedding(8)
    >>> emb(torch.tensor([0.0, 0.5, 1.0])).shape
    torch.Size([3, 8])
    >>> emb(torch.zeros(1))[0, 4:]  # cos(0) = 1 on the second half
    tensor([1., 1., 1., 1.])
    """

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even int >= 2 (number of time features), got {dim!r}")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite positive float (highest frequency), got {scale!r}")
        if not (isinstance(max_period, (int, float)) and math.isfinite(max_period) and max_period > 1):
            raise ValueError(f"max_period must be a finite float > 1 (frequency ratio), got {max_period!r}")
        self.dim = dim
        self.scale = float(scale)
        self.max_period = float(max_period)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed times.

        Parameters
        ----------
        t : torch.Tensor
            ``(B,)`` floating-point times (dimensionless, nominally in [0, 1]).

        Returns
        -------
        torch.Tensor
            ``(B, dim)`` features, same dtype and device as ``t``.
        """
        if not isinstance(t, torch.Tensor) or t.ndim != 1 or not t.is_floating_point():
            got = f"shape {tuple(t.shape)}, dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must be a 1-D floating-point tensor of shape (B,), got {got}")
        arg = t[:, None] * self.frequencies(t.dtype, t.device)  # (B, dim/2)
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)  # (B, dim)

    def frequencies(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """The ``(dim/2,)`` angular frequencies (rad per unit of the input), highest first.

        Computed per call in the requested dtype and device (dim/2 exponentials): no buffer whose
        precision would be lost by a float32 -> float64 round trip.

        Examples
        --------
        >>> [round(w, 6) for w in SinusoidalTimeEmbedding(4, scale=10.0, max_period=100.0).frequencies().tolist()]
        [10.0, 1.0]
        """
        half = self.dim // 2
        k = torch.arange(half, dtype=dtype, device=device)
        return self.scale * torch.exp(-math.log(self.max_period) / half * k)  # (dim/2,)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale}, max_period={self.max_period}"


def as_time_batch(t: torch.Tensor | float, batch_size: int, like: torch.Tensor) -> torch.Tensor:
    """Validate a diffusion time argument and return it as ``(B,)`` in ``like``'s dtype/device.

    Parameters
    ----------
    t : torch.Tensor or float
        ``(B,)`` times, or a scalar (0-d tensor or Python number) broadcast to
        the batch. Values are dimensionless, nominally in [0, 1].
    batch_size : int
        Expected ``B``.
    like : torch.Tensor
        Tensor whose dtype and device the result takes (the positions).

    Returns
    -------
    torch.Tensor
        ``(B,)`` times.

    Examples
    --------
    >>> import torch
    >>> as_time_batch(0.5, 3, torch.zeros(3, 2, dtype=torch.float64))
    tensor([0.5000, 0.5000, 0.5000], dtype=torch.float64)
    """
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        t = torch.tensor(float(t))
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor of shape ({batch_size},) or a float, got {type(t).__name__}")
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must be a real tensor of diffusion times, got dtype {t.dtype}")
    if t.ndim == 0:
        t = t.expand(batch_size)
    elif t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]  # tolerate (B, 1), a common caller layout
    if t.shape != (batch_size,):
        raise ValueError(f"t must have shape ({batch_size},) to match x's batch, got {tuple(t.shape)}")
    return t.to(dtype=like.dtype, device=like.device)


def check_score_inputs(
    module: torch.nn.Module, x: torch.Tensor, t: torch.Tensor | float, n_particles: int, spatial_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the ``(x, t)`` arguments of a score network's ``forward``.

    Parameters
    ----------
    module : torch.nn.Module
        The network; ``x`` must match the dtype and device of its parameters.
    x : torch.Tensor
        ``(B, n_particles, spatial_dim)`` positions.
    t : torch.Tensor or float
        ``(B,)`` times or a scalar, see :func:`as_time_batch`.
    n_particles, spatial_dim : int
        The shape the network was built for.

    Returns
    -------
    x : torch.Tensor
        Unchanged.
    t : torch.Tensor
        ``(B,)`` in ``x``'s dtype and device.
    """
    shape = f"(B, {n_particles}, {spatial_dim})"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape {shape}, got {type(x).__name__}")
    if x.ndim != 3 or tuple(x.shape[1:]) != (n_particles, spatial_dim):
        raise ValueError(f"x must have shape {shape}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be float32 or float64, got dtype {x.dtype}")
    p = next(module.parameters(), None)
    if p is not None and (p.dtype != x.dtype or p.device != x.device):
        raise TypeError(
            f"x is {x.dtype} on {x.device} but {type(module).__name__}'s parameters are {p.dtype} on {p.device}; "
            f"convert one of them, e.g. net.to(dtype=x.dtype, device=x.device)"
        )
    return x, as_time_batch(t, x.shape[0], x)


def config_from_mapping(config_cls: type[_C], values: Mapping[str, Any] | _C | None, what: str = "config") -> _C:
    """Build a config dataclass from a mapping of field values, rejecting unknown fields.

    Parameters
    ----------
    config_cls : type
        A ``@dataclass`` whose fields all have defaults.
    values : Mapping, instance of ``config_cls`` or None
        Field overrides (None: all defaults). An instance is returned unchanged.
    what : str
        Name of the argument, for error messages.

    Returns
    -------
    config_cls instance

    Examples
    --------
    >>> from idem_md.nn.mlp import MLPScoreNetConfig
    >>> config_from_mapping(MLPScoreNetConfig, {"hidden_dim": 64}).hidden_dim
    64
    """
    if values is None:
        return config_cls()
    if isinstance(values, config_cls):
        return values
    if not isinstance(values, Mapping):
        raise TypeError(
            f"{what} must be a {config_cls.__name__} or a mapping of its fields, got {type(values).__name__}"
        )
    fields = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise TypeError(f"unknown {what} field(s) {unknown} for {config_cls.__name__}; valid fields: {fields}")
    return config_cls(**dict(values))


class ScoreNetConfigMixin:
    """``get_config`` / ``from_config`` shared by the score networks.

    A network using it sets ``kind`` and holds ``n_particles``, ``spatial_dim`` and a dataclass ``config``,
    and takes ``(n_particles, spatial_dim, config)`` in its constructor.
    """

    kind: str

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]):
        """Rebuild a network (untrained) from the output of :meth:`get_config`."""
        if cfg.get("kind", cls.kind) != cls.kind:
            raise ValueError(f"cfg describes a {cfg['kind']!r} network, not {cls.kind!r} ({cls.__name__})")
        return cls(int(cfg["n_particles"]), int(cfg["spatial_dim"]), cfg.get("config"))

    def bind_schedule(self, schedule: Any) -> None:
        """Hook called by :class:`~idem_md.IDEMSampler` with its noise schedule (``h(t)``, working
        units squared) once the network is built; networks whose features depend on the noise
        level override it. The default does nothing."""

    def get_config(self) -> dict[str, Any]:
        """Plain-data description (kind, shape, hyperparameters) for checkpoints."""
        return {
            "kind": self.kind,
            "n_particles": self.n_particles,
            "spatial_dim": self.spatial_dim,
            "config": dataclasses.asdict(self.config),
        }
