"""Array checks and batching helpers shared by the metrics (float64 numpy on the CPU)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _as_array(x: Any, name: str, allow_neg_inf: bool = False) -> np.ndarray:
    """Float64 numpy copy of a tensor/array, refusing empty, non-numeric and non-finite input."""
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must be real numeric, got dtype {x.dtype}")
        a = x.detach().cpu().to(torch.float64).numpy()
    else:
        try:
            a = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a numeric numpy array or torch.Tensor, got {type(x).__name__}") from err
        if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
        a = a.astype(np.float64)
    if a.ndim == 0 or a.shape[0] == 0 or a.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(a.shape)}); need at least one sample")
    bad = np.isnan(a) | (np.isposinf(a) if allow_neg_inf else ~np.isfinite(a))
    if bad.any():
        what = "NaN or +inf" if allow_neg_inf else "NaN or infinite"
        raise ValueError(f"{name} contains {what} values ({int(bad.sum())} entries)")
    return a


def _as_1d(x: Any, name: str) -> np.ndarray:
    a = _as_array(x, name)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (N,), got shape {tuple(a.shape)}")
    return a


def _configurations(x: Any, name: str, n_particles: int | None, spatial_dim: int | None) -> np.ndarray:
    """``(N, n, d)`` float64 from ``(N, n, d)`` or flat ``(N, dim)`` input."""
    a = _as_array(x, name)
    for arg, v in (("n_particles", n_particles), ("spatial_dim", spatial_dim)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise ValueError(f"{arg} must be a positive int or None, got {v!r}")
    if a.ndim == 3:
        n, d = a.shape[1:]
        if (n_particles is not None and n_particles != n) or (spatial_dim is not None and spatial_dim != d):
            raise ValueError(
                f"{name} has shape {tuple(a.shape)}, which does not match n_particles={n_particles}, "
                f"spatial_dim={spatial_dim}"
            )
        return a
    if a.ndim != 2:
        hint = " (use x[:, None] for scalar samples)" if a.ndim == 1 else ""
        raise ValueError(
            f"{name} must have shape (N, dim) or (N, n_particles, spatial_dim), got {tuple(a.shape)}{hint}"
        )
    dim = a.shape[1]
    if n_particles is None and spatial_dim is None:
        n, d = 1, dim
    elif n_particles is None:
        n, d = dim // spatial_dim, spatial_dim
    elif spatial_dim is None:
        n, d = n_particles, dim // n_particles
    else:
        n, d = n_particles, spatial_dim
    if n * d != dim or n < 1 or d < 1:
        raise ValueError(
            f"{name} has {dim} coordinates per row, which is not n_particles * spatial_dim "
            f"({n_particles} * {spatial_dim})"
        )
    return a.reshape(len(a), n, d)


def _pair_configurations(
    x: Any, y: Any, n_particles: int | None, spatial_dim: int | None
) -> tuple[np.ndarray, np.ndarray]:
    xa = _configurations(x, "x", n_particles, spatial_dim)
    ya = _configurations(y, "y", n_particles, spatial_dim)
    if xa.shape[1:] != ya.shape[1:]:
        raise ValueError(
            f"x and y must hold configurations of the same shape (n_particles, spatial_dim), "
            f"got {tuple(xa.shape[1:])} and {tuple(ya.shape[1:])}"
        )
    return xa, ya


def _need_pairs(x: np.ndarray) -> None:
    if x.shape[1] < 2:
        raise ValueError(
            f"interatomic distances need n_particles >= 2, got {x.shape[1]} "
            "(pass n_particles/spatial_dim for flat input)"
        )


def _centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=1, keepdims=True)


def _subsample(x: np.ndarray, max_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_samples is None or len(x) <= max_samples:
        return x
    return x[np.sort(rng.choice(len(x), size=int(max_samples), replace=False))]


def _length(x: Any, name: str) -> int:
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) == 0:
        raise TypeError(f"{name} must be an array or tensor with samples along the first axis, got {type(x).__name__}")
    return int(shape[0])


def _permutation(n: int, rng: np.random.Generator | torch.Generator) -> np.ndarray:
    if isinstance(rng, torch.Generator):
        return torch.randperm(n, generator=rng).numpy()
    if isinstance(rng, np.random.Generator):
        return rng.permutation(n)
    raise TypeError(f"generator must be a numpy.random.Generator or torch.Generator, got {type(rng).__name__}")


def _take(x: Any, idx: np.ndarray) -> Any:
    if isinstance(x, torch.Tensor):
        return x[torch.as_tensor(idx, device=x.device)]
    return np.asarray(x)[idx]

def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, D), (M, D) -> (N, M)`` squared Euclidean distances (direct differences, no cancellation)."""
    out = np.empty((len(a), len(b)))
    step = max(1, 2**24 // max(1, len(b) * a.shape[1]))  # bound the (step, M, D) temporary
    for s in range(0, len(a), step):
        diff = a[s : s + step, None, :] - b[None, :, :]
        out[s : s + step] = np.einsum("nmd,nmd->nm", diff, diff)
    return out
