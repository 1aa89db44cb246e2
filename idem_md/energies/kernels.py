"""Fused CPU kernels (numba) for the pair energies LJ-n and DW-n, with forces.

One iDEM training step evaluates energy and forces at ``batch * K`` configurations
(512,000 for batch 512 and K = 1000), so on a CPU the energy is the bottleneck. The
pure-torch paths in :mod:`idem_md.energies.lennard_jones` and
:mod:`idem_md.energies.double_well` materialise every pair displacement of the
batch; the kernels here loop over pairs per configuration instead, in parallel over
the batch, and write energies and forces into preallocated outputs in one pass.

The torch paths stay the reference; these kernels must agree with them (see
``tests/test_kernels.py``). Arithmetic is done in float64 whatever the input dtype
(float32 inputs are widened on load and the results rounded once on store), so a
float32 call agrees with the float64 reference to float32 rounding rather than to
the error of a float32 accumulation (on LJ-13 reference samples: max force error
7e-6 against 2e-4 for float32 arithmetic). On the 2-core development machine the
widened kernel measured no slower than a float32-arithmetic one: the pair loop is
latency bound, not vectorised.

The compiled loops are in :mod:`idem_md.energies.kernels_numba`; this module holds the
backend choice and the checked numpy and torch interfaces. numba is imported on first use,
not when this module is imported, so that ``import idem_md`` stays fast. Kernels are
compiled with ``cache=True``: the JIT cost (a few seconds per dtype) is paid once per
machine and stored in ``__pycache__``.
numba's global settings are left alone: all cores, and its default threading layer,
GNU OpenMP where TBB is not installed. Like torch's own OpenMP pool, that layer is not
fork-safe: a process forked after an evaluation aborts or hangs in its first parallel
kernel, so start worker processes with ``spawn`` or torchrun, not ``fork``.

Units are those of the calling energy (reduced units for the benchmarks).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "BACKENDS",
    "check_backend",
    "numba_available",
    "use_numba",
    "lj_energy_forces",
    "lj_energy",
    "dw_energy_forces",
    "dw_energy",
    "lj_energy_forces_torch",
    "lj_energy_torch",
    "dw_energy_forces_torch",
    "dw_energy_torch",
]

BACKENDS = ("auto", "torch", "numba")
"""Accepted values of an energy's ``backend`` argument."""

_DW_MIN_DISTANCE = 1e-12  # same guard on 1/d as the torch reference in double_well.py

_KERNELS: dict[str, Callable[..., None]] | None = None
_NUMBA_OK: bool | None = None


# --------------------------------------------------------------- backend choice
def check_backend(backend: Any) -> str:
    """Validate an energy's ``backend`` argument.

    Parameters
    ----------
    backend : str
        ``"auto"`` (numba for CPU tensors when numba imports, torch otherwise),
        ``"torch"`` (the pure-torch reference) or ``"numba"`` (the fused kernels
        wherever they apply).

    Returns
    -------
    str
        The backend, lower case.

    Raises
    ------
    ValueError
        For any other value, or ``"numba"`` when numba is not installed.
    """
    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    backend = backend.lower()
    if backend == "numba" and importlib.util.find_spec("numba") is None:
        raise ValueError("backend='numba' needs the numba package, which is not installed; use 'auto' or 'torch'")
    return backend


def numba_available() -> bool:
    """True when numba imports (tried once, on the first call)."""
    global _NUMBA_OK
    if _NUMBA_OK is None:
        try:
            import numba  # noqa: F401
        except ImportError:
            _NUMBA_OK = False
        else:
            _NUMBA_OK = True
    return _NUMBA_OK


def use_numba(backend: str, x: torch.Tensor) -> bool:
    """Whether an energy with this ``backend`` should evaluate ``x`` with the kernels.

    The kernels apply to CPU tensors of dtype float32 or float64 that need no
    gradient (``x.requires_grad`` with grad mode on keeps the differentiable torch
    path, whatever the backend: autograd callers need it). Among those, ``"numba"``
    always uses the kernels and ``"auto"`` uses them when numba imports.

    Parameters
    ----------
    backend : str
        A value accepted by :func:`check_backend`.
    x : torch.Tensor
        The validated ``(B, n, d)`` batch.
    """
    if backend == "torch":
        return False
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if x.requires_grad and torch.is_grad_enabled():
        return False
    return backend == "numba" or numba_available()


# ------------------------------------------------------------------- kernels
def _kernels() -> dict[str, Callable[..., None]]:
    """The compiled kernels of :mod:`idem_md.energies.kernels_numba` (imported, so numba too, on first use)."""
    global _KERNELS
    if _KERNELS is None:
        from . import kernels_numba

        _KERNELS = {"lj": kernels_numba.lj_kernel, "dw": kernels_numba.dw_kernel}
    return _KERNELS


# ----------------------------------------------------------- numpy interface
def _check_array(x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy.ndarray of shape (B, n, d), got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(f"x must have shape (B, n_particles, spatial_dim), got {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got dtype {x.dtype}")
    if x.shape[1] < 2 or not 1 <= x.shape[2] <= 3:
        raise ValueError(f"x must hold >= 2 particles (axis 1) in 1 to 3 dimensions (axis 2), got shape {x.shape}")
    return np.ascontiguousarray(x)  # a copy only when x is not C-contiguous


def _n_chunks(batch: int) -> int:
    import numba

    # prange over one chunk of configurations per thread, not over configurations, so the
    # float64 scratch rows are allocated once per thread. numba splits a prange statically,
    # so more chunks would not balance the load (measured: no gain on a busy machine).
    return min(batch, numba.get_num_threads())


def _outputs(x: np.ndarray, with_forces: bool) -> tuple[np.ndarray, np.ndarray]:
    energy = np.empty(x.shape[0], dtype=x.dtype)  # (B,)
    # The kernel skips the force store when with_forces is False: no (B, n, d) buffer then.
    forces = np.empty(x.shape if with_forces else (0,) + x.shape[1:], dtype=x.dtype)
    return energy, forces


def _run_lj(x, epsilon, r_m, pair_factor, softening, oscillator_scale, with_forces):
    x = _check_array(x)
    energy, forces = _outputs(x, with_forces)
    _kernels()["lj"](x, float(epsilon), float(r_m), float(pair_factor), float(softening),
                     float(oscillator_scale), energy, forces, with_forces, _n_chunks(x.shape[0]))
    return energy, forces


def _run_dw(x, a, b, d0, with_forces):
    x = _check_array(x)
    energy, forces = _outputs(x, with_forces)
    _kernels()["dw"](x, float(a), float(b), float(d0), _DW_MIN_DISTANCE, energy, forces, with_forces,
                     _n_chunks(x.shape[0]))
    return energy, forces


def lj_energy_forces(x: np.ndarray, epsilon: float = 1.0, r_m: float = 1.0, pair_factor: float = 2.0,
                     softening: float = 1e-6, oscillator_scale: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    r"""Energies and forces of a batch of LJ-n clusters (see :class:`LennardJonesCluster`).

    .. math::

        E = f \epsilon \sum_{i<j} [(r_m/d_{ij})^{12} - 2 (r_m/d_{ij})^6] + c \sum_i |x_i - \bar x|^2,
        \qquad d_{ij} = \sqrt{|x_i - x_j|^2 + s}

    Parameters
    ----------
    x : numpy.ndarray
        ``(B, n, d)`` float32 or float64 coordinates (length unit, r_m = 1 reduced).
    epsilon, r_m : float
        Well depth (energy) and minimum position (length).
    pair_factor : float
        ``f``; 2 for the iDEM benchmark.
    softening : float
        ``s``, added to squared distances (length^2).
    oscillator_scale : float
        ``c`` (energy per length^2).

    Returns
    -------
    energy : numpy.ndarray
        ``(B,)``, dtype of ``x``.
    forces : numpy.ndarray
        ``(B, n, d)`` ``-dE/dx``, dtype of ``x`` (energy per length).
    """
    return _run_lj(x, epsilon, r_m, pair_factor, softening, oscillator_scale, True)


def lj_energy(x: np.ndarray, epsilon: float = 1.0, r_m: float = 1.0, pair_factor: float = 2.0,
              softening: float = 1e-6, oscillator_scale: float = 0.5) -> np.ndarray:
    """Energies only, ``(B,)``; arguments as :func:`lj_energy_forces`."""
    return _run_lj(x, epsilon, r_m, pair_factor, softening, oscillator_scale, False)[0]


def dw_energy_forces(x: np.ndarray, a: float = 0.9, b: float = -4.0, d0: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    r"""Energies and forces of a batch of DW-n configurations (see :class:`MultiDoubleWell`).

    .. math::

        E = \sum_{i<j} [a (d_{ij} - d_0)^4 + b (d_{ij} - d_0)^2], \qquad d_{ij} = |x_i - x_j|

    Parameters
    ----------
    x : numpy.ndarray
        ``(B, n, d)`` float32 or float64 coordinates (reduced length).
    a, b : float
        Quartic and quadratic coefficients (energy per length^4, per length^2).
    d0 : float
        Centre of the double well (length).

    Returns
    -------
    energy : numpy.ndarray
        ``(B,)``, dtype of ``x``.
    forces : numpy.ndarray
        ``(B, n, d)`` ``-dE/dx``, dtype of ``x``. Coincident particles get zero
        pair force, as in the reference.
    """
    return _run_dw(x, a, b, d0, True)


def dw_energy(x: np.ndarray, a: float = 0.9, b: float = -4.0, d0: float = 4.0) -> np.ndarray:
    """Energies only, ``(B,)``; arguments as :func:`dw_energy_forces`."""
    return _run_dw(x, a, b, d0, False)[0]


# ----------------------------------------------------------- torch interface
def _as_array(x: torch.Tensor) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, n, d), got {type(x).__name__}")
    if x.device.type != "cpu":
        raise ValueError(f"x must be a CPU tensor for the numba kernels, got device {x.device}")
    return x.detach().contiguous().numpy()  # zero-copy view when x is contiguous


def lj_energy_forces_torch(x: torch.Tensor, epsilon: float = 1.0, r_m: float = 1.0, pair_factor: float = 2.0,
                           softening: float = 1e-6, oscillator_scale: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lj_energy_forces` on a CPU tensor ``(B, n, d)``; returns tensors sharing the kernel's outputs.

    The results carry no autograd history.
    """
    e, f = lj_energy_forces(_as_array(x), epsilon, r_m, pair_factor, softening, oscillator_scale)
    return torch.from_numpy(e), torch.from_numpy(f)


def lj_energy_torch(x: torch.Tensor, epsilon: float = 1.0, r_m: float = 1.0, pair_factor: float = 2.0,
                    softening: float = 1e-6, oscillator_scale: float = 0.5) -> torch.Tensor:
    """:func:`lj_energy` on a CPU tensor ``(B, n, d)``, returning ``(B,)``."""
    return torch.from_numpy(lj_energy(_as_array(x), epsilon, r_m, pair_factor, softening, oscillator_scale))


def dw_energy_forces_torch(x: torch.Tensor, a: float = 0.9, b: float = -4.0,
                           d0: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dw_energy_forces` on a CPU tensor ``(B, n, d)``; no autograd history."""
    e, f = dw_energy_forces(_as_array(x), a, b, d0)
    return torch.from_numpy(e), torch.from_numpy(f)


def dw_energy_torch(x: torch.Tensor, a: float = 0.9, b: float = -4.0, d0: float = 4.0) -> torch.Tensor:
    """:func:`dw_energy` on a CPU tensor ``(B, n, d)``, returning ``(B,)``."""
    return torch.from_numpy(dw_energy(_as_array(x), a, b, d0))
