"""Mean and standard deviation of a metric over disjoint random batches."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ._arrays import _length, _permutation, _take

__all__ = ['batched']


# ------------------------------------------------------------------------ batches
def batched(
    metric_fn: Callable[[Any, Any], float],
    x: Any,
    y: Any,
    n_batches: int = 5,
    batch_size: int = 1000,
    seed: int = 0,
    generator: np.random.Generator | torch.Generator | None = None,
) -> tuple[float, float]:
    """Mean and standard deviation of ``metric_fn`` over independent disjoint batches.

    ``x`` and ``y`` are each shuffled once (``generator`` when given, else
    ``numpy.random.default_rng(seed)``) and cut into ``n_batches`` disjoint
    batches of ``batch_size`` samples (no sample is reused);
    ``metric_fn(x_batch, y_batch)`` is evaluated on the k-th batch of each.
    Batches keep the input type (tensor or array) and the trailing shape.

    Returns
    -------
    (float, float)
        Mean and sample standard deviation (``ddof=1``; 0.0 for one batch),
        in the metric's units.

    Raises
    ------
    ValueError
        When ``x`` or ``y`` has fewer than ``n_batches * batch_size`` samples.
    """
    if not callable(metric_fn):
        raise TypeError(f"metric_fn must be callable (x_batch, y_batch) -> float, got {type(metric_fn).__name__}")
    for name, v in (("n_batches", n_batches), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    need = n_batches * batch_size
    for name, arr in (("x", x), ("y", y)):
        n = _length(arr, name)
        if n < need:
            raise ValueError(
                f"{name} has {n} samples, fewer than n_batches * batch_size = {n_batches} * {batch_size} = {need}"
            )
    rng = generator if generator is not None else np.random.default_rng(seed)
    px, py = _permutation(_length(x, "x"), rng), _permutation(_length(y, "y"), rng)
    values = []
    for k in range(n_batches):
        sl = slice(k * batch_size, (k + 1) * batch_size)
        values.append(float(metric_fn(_take(x, px[sl]), _take(y, py[sl]))))
    vals = np.asarray(values)
    std = float(vals.std(ddof=1)) if n_batches > 1 else 0.0
    return float(vals.mean()), std
