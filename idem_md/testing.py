"""Numerical symmetry checks for functions of particle configurations.

:func:`assert_equivariant` checks a vector field ``f: (B, n, d) -> (B, n, d)``
(a score network at fixed time, forces) and :func:`assert_invariant` a scalar
``E: (B, n, d) -> (B,)`` (an energy) under random rotations, reflections,
translations and particle permutations, in the style of
``e3nn.util.test.assert_equivariant``. Configurations are row vectors: a
transformation acts as ``x -> x @ Q + c`` with ``Q`` orthogonal.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

__all__ = ["assert_equivariant", "assert_invariant", "random_orthogonal"]

_Transform = tuple[str, Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def random_orthogonal(
    d: int,
    *,
    det: int = 1,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Haar-random orthogonal ``(d, d)`` matrix with determinant ``det``.

    Parameters
    ----------
    d : int
        Dimension, >= 1.
    det : {1, -1}
        +1 for a rotation, -1 for a rotation composed with a reflection.
    dtype, device
        Of the result.
    generator : torch.Generator, optional
        CPU generator for reproducible draws.

    Returns
    -------
    torch.Tensor
        ``(d, d)`` matrix ``Q`` with ``Q.T @ Q = I`` and ``det(Q) = det``.

    Examples
    --------
    >>> import torch
    >>> Q = random_orthogonal(3, det=-1, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(Q.T @ Q, torch.eye(3, dtype=Q.dtype))), round(float(torch.linalg.det(Q)), 6)
    (True, -1.0)
    """
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive int, got {d!r}")
    if det not in (1, -1):
        raise ValueError(f"det must be 1 or -1, got {det!r}")
    a = torch.randn(d, d, dtype=torch.float64, generator=generator)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))  # sign fix makes the QR draw Haar-distributed
    if torch.linalg.det(q) * det < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype=dtype, device=device)


def _inputs(x, n_particles, spatial_dim, batch_size, dtype, device, generator) -> torch.Tensor:
    if x is None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        return torch.randn(batch_size, n_particles, spatial_dim, dtype=torch.float64, generator=generator).to(
            dtype=dtype, device=device
        )
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or tuple(x.shape[1:]) != (n_particles, spatial_dim):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (B, {n_particles}, {spatial_dim}), got {got}")
    return x.to(dtype=dtype, device=device if device is not None else x.device)


def _transforms(
    n_particles, spatial_dim, rotations, reflections, translations, permutations, dtype, device, generator
) -> Iterator[_Transform]:
    """Yield ``(name, act_on_input, act_on_vector_output)`` for one random draw of each enabled symmetry."""
    if rotations:
        q = random_orthogonal(spatial_dim, det=1, dtype=dtype, device=device, generator=generator)
        yield "rotation", (lambda x, q=q: x @ q), (lambda y, q=q: y @ q)
    if reflections:
        q = random_orthogonal(spatial_dim, det=-1, dtype=dtype, device=device, generator=generator)
        yield "reflection (det -1 orthogonal map)", (lambda x, q=q: x @ q), (lambda y, q=q: y @ q)
    if translations:
        c = 3.0 * torch.randn(1, 1, spatial_dim, dtype=torch.float64, generator=generator)
        c = c.to(dtype=dtype, device=device)
        yield "translation", (lambda x, c=c: x + c), (lambda y: y)
    if permutations:
        p = torch.randperm(n_particles, generator=generator).to(device)
        yield "permutation", (lambda x, p=p: x[:, p]), (lambda y, p=p: y[:, p])


def _compare(what: str, got: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float, trial: int) -> None:
    got, expected = got.detach(), expected.detach()
    err = (got - expected).abs()
    excess = err - (atol + rtol * expected.abs())
    if bool((excess > 0).any()) or not bool(torch.isfinite(got).all()):
        raise AssertionError(
            f"{what} failed in trial {trial}: max abs error {float(err.max()):.3e} exceeds atol={atol:g} + "
            f"rtol={rtol:g}*|expected| (max |expected| = {float(expected.abs().max()):.3e})"
        )


def _call(fn, x, expected_shape, kind) -> torch.Tensor:
    y = fn(x)
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != expected_shape:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise AssertionError(f"fn must return a {kind} of shape {expected_shape}, got {got}")
    return y


def assert_equivariant(
    fn: Callable[[torch.Tensor], torch.Tensor],
    n_particles: int,
    spatial_dim: int,
    *,
    rotations: bool = True,
    reflections: bool = False,
    translations: bool = True,
    permutations: bool = True,
    com_free: bool = True,
    n_trials: int = 3,
    dtype: torch.dtype = torch.float64,
    atol: float = 1e-9,
    rtol: float = 1e-12,
    batch_size: int = 4,
    x: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> None:
    """Assert that a per-particle vector field is equivariant, numerically.

    With ``y = fn(x)``, checks for random draws of each enabled symmetry:

    * rotations (``Q`` orthogonal, det +1): ``fn(x @ Q) == y @ Q``;
    * reflections (``Q`` orthogonal, det -1): ``fn(x @ Q) == y @ Q``;
    * translations (``c`` per batch, same for all particles): ``fn(x + c) == y``;
    * permutations ``p`` of the particles: ``fn(x[:, p]) == y[:, p]``;
    * ``com_free``: ``y.mean(dim=1) == 0``.

    Equality means ``|got - expected| <= atol + rtol * |expected|`` elementwise.

    Parameters
    ----------
    fn : callable
        ``(B, n_particles, spatial_dim) -> (B, n_particles, spatial_dim)``, in ``dtype``.
    n_particles, spatial_dim : int
        Shape of one configuration.
    rotations, reflections, translations, permutations, com_free : bool
        Which properties to check (reflections are off by default: not every
        model is meant to be reflection-equivariant).
    n_trials : int
        Independent draws of inputs and transformations.
    dtype : torch.dtype
        Of the random inputs and transformations.
    atol, rtol : float
        Absolute and relative tolerances.
    batch_size : int
        Configurations per random input batch.
    x : torch.Tensor, optional
        ``(B, n_particles, spatial_dim)`` inputs to use instead of standard-normal draws.
    device : torch.device or str, optional
        Device of the inputs (default: CPU, or ``x``'s device).
    generator : torch.Generator, optional
        CPU generator; default a fresh one seeded with 0, so checks are deterministic.

    Raises
    ------
    AssertionError
        Naming the property that failed, the trial and the size of the violation.

    Examples
    --------
    >>> import torch
    >>> def spring_forces(x):  # sum_j (x_j - x_i): E(3)-equivariant, centre-of-mass free
    ...     return (x[:, None, :, :] - x[:, :, None, :]).sum(dim=2)
    >>> assert_equivariant(spring_forces, 5, 3, reflections=True)
    >>> assert_equivariant(lambda x: spring_forces(x) + 1.0, 5, 3)
    Traceback (most recent call last):
    ...
    AssertionError: rotation equivariance failed in trial 0: max abs error ...
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    _check_trials(n_trials)
    for trial in range(n_trials):
        xb = _inputs(x, n_particles, spatial_dim, batch_size, dtype, device, gen)
        shape = tuple(xb.shape)
        y = _call(fn, xb, shape, "vector field")
        for name, act_in, act_out in _transforms(
            n_particles, spatial_dim, rotations, reflections, translations, permutations, dtype, xb.device, gen
        ):
            what = f"{name} {'invariance' if name == 'translation' else 'equivariance'}"
            _compare(what, _call(fn, act_in(xb), shape, "vector field"), act_out(y), atol, rtol, trial)
        if com_free:
            _compare("centre-of-mass freedom (mean over particles == 0)", y.mean(dim=1), torch.zeros_like(y[:, 0]),
                     atol, rtol, trial)  # fmt: skip


def assert_invariant(
    fn: Callable[[torch.Tensor], torch.Tensor],
    n_particles: int,
    spatial_dim: int,
    *,
    rotations: bool = True,
    reflections: bool = False,
    translations: bool = True,
    permutations: bool = True,
    n_trials: int = 3,
    dtype: torch.dtype = torch.float64,
    atol: float = 1e-9,
    rtol: float = 1e-12,
    batch_size: int = 4,
    x: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> None:
    """Assert that a scalar function of configurations (an energy) is invariant, numerically.

    With ``e = fn(x)`` of shape ``(B,)``, checks ``fn(x @ Q) == e`` for random
    rotations and (optionally) reflections ``Q``, ``fn(x + c) == e`` for random
    translations and ``fn(x[:, p]) == e`` for random particle permutations.
    Parameters are those of :func:`assert_equivariant` (there is no
    ``com_free``: it concerns vector outputs). Energies of random
    standard-normal configurations can be huge (overlapping particles): pass
    ``rtol`` or your own ``x``.

    Raises
    ------
    AssertionError
        Naming the symmetry that failed, the trial and the size of the violation.

    Examples
    --------
    >>> import torch
    >>> def pair_energy(x):  # sum of squared pair distances
    ...     return torch.cdist(x, x).pow(2).sum(dim=(1, 2))
    >>> assert_invariant(pair_energy, 4, 2, reflections=True)
    >>> assert_invariant(lambda x: x[:, 0, 0], 4, 2, rotations=False, translations=False)
    Traceback (most recent call last):
    ...
    AssertionError: permutation invariance failed in trial 0: max abs error ...
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    _check_trials(n_trials)
    for trial in range(n_trials):
        xb = _inputs(x, n_particles, spatial_dim, batch_size, dtype, device, gen)
        shape = (xb.shape[0],)
        e = _call(fn, xb, shape, "scalar per configuration")
        for name, act_in, _ in _transforms(
            n_particles, spatial_dim, rotations, reflections, translations, permutations, dtype, xb.device, gen
        ):
            _compare(f"{name} invariance", _call(fn, act_in(xb), shape, "scalar per configuration"), e, atol, rtol,
                     trial)  # fmt: skip


def _check_trials(n_trials: int) -> None:
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive int, got {n_trials!r}")
