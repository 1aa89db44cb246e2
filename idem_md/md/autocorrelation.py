"""Autocorrelation of MD time series: Sokal's automatic window and the thinning observables."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .config import OBSERVABLES

__all__ = ["RELIABLE_LENGTH_IN_TAU", "integrated_autocorrelation_time", "observable_series", "sokal_tau"]

#: A series shorter than this many autocorrelation times gives an unreliable
#: estimate (the threshold emcee uses).
RELIABLE_LENGTH_IN_TAU = 50


def integrated_autocorrelation_time(series: Any, c: float = 5.0) -> float:
    r"""Integrated autocorrelation time of a scalar time series, Sokal's automatic window.

    .. math::

        \tau(M) = 1 + 2 \sum_{t=1}^{M} \hat\rho(t),

    with :math:`\hat\rho` the normalised autocovariance (the biased, FFT-based
    estimator, which divides by the series length), and the window ``M`` the
    smallest one with ``M >= c * tau(M)`` (Sokal 1997; ``c = 5`` as in emcee).
    With this convention ``tau = 1`` for uncorrelated data, ``tau = (1 + phi) /
    (1 - phi)`` for an AR(1) process, and the effective sample size is
    ``len(series) / tau``.

    Parameters
    ----------
    series : array_like
        1D, finite, at least 4 values, not constant.
    c : float
        Window constant, > 0. Larger is less biased and noisier.

    Returns
    -------
    float
        ``tau`` in units of the series' spacing. When the series is shorter
        than ``50 * tau`` (emcee's reliability threshold) a :class:`RuntimeWarning`
        says so: the estimate is then biased low and noisy.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> round(integrated_autocorrelation_time(rng.normal(size=20000)), 1)
    1.0
    """
    tau, _ = sokal_tau(series, c)
    n = np.size(series)
    if n < RELIABLE_LENGTH_IN_TAU * tau:
        warnings.warn(
            f"integrated_autocorrelation_time: a series of length {n} is shorter than "
            f"{RELIABLE_LENGTH_IN_TAU} tau = {RELIABLE_LENGTH_IN_TAU * tau:.3g}; the estimate is unreliable",
            RuntimeWarning,
            stacklevel=2,
        )
    return tau


def sokal_tau(series: Any, c: float) -> tuple[float, int]:
    """``(tau, window M)`` of :func:`integrated_autocorrelation_time`, without its warning.

    With the biased autocovariance ``tau(M)`` falls to 0 at the last lag, so a window
    satisfying ``M >= c tau(M)`` always exists."""
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0:
        raise ValueError(f"c must be a positive float, got {c!r}")
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 1 or x.size < 4:
        raise ValueError(f"series must be 1D with at least 4 values, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("series contains NaN or infinite values")
    x = x - x.mean()
    var = float(np.mean(x * x))
    if var <= 0.0:
        raise ValueError("series is constant: its autocorrelation time is undefined")
    n = x.size
    n_fft = 1 << (2 * n - 1).bit_length()  # zero padding: a linear, not circular, correlation
    f = np.fft.rfft(x, n=n_fft)
    acov = np.fft.irfft(f * np.conj(f), n=n_fft)[:n] / n  # biased autocovariance
    rho = acov / var
    taus = 2.0 * np.cumsum(rho) - 1.0  # taus[M] = 1 + 2 sum_{t=1}^{M} rho(t)
    window = int(np.argmax(np.arange(n) >= c * taus))
    return float(taus[window]), window


def observable_series(positions: Any, energies: Any, names: tuple[str, ...] = OBSERVABLES) -> dict[str, np.ndarray]:
    """Scalar time series whose autocorrelation sets the thinning.

    Parameters
    ----------
    positions : array_like
        ``(T, n_particles, d)`` reduced lengths.
    energies : array_like
        ``(T,)`` reduced energies.
    names : tuple of str
        Any of :data:`OBSERVABLES`: ``"energy"`` (potential energy),
        ``"radius_of_gyration"`` (``sqrt(mean_i |x_i - xbar|^2)``) and
        ``"mean_pair_distance"`` (mean over pairs ``i < j`` of ``|x_i - x_j|``).
        The last two are permutation-invariant structural coordinates; for
        DW-4 they relax about 20 times more slowly than the energy
        (docs/md_baselines.md).

    Returns
    -------
    dict
        ``name -> (T,)`` float64 array.
    """
    x = np.asarray(positions, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "energy":
            out[name] = np.asarray(energies, dtype=np.float64)
        elif name == "radius_of_gyration":
            c = x - x.mean(axis=1, keepdims=True)
            out[name] = np.sqrt((c * c).sum(-1).mean(-1))
        elif name == "mean_pair_distance":
            i, j = np.triu_indices(x.shape[1], 1)
            out[name] = np.linalg.norm(x[:, i] - x[:, j], axis=-1).mean(-1)
        else:
            raise ValueError(f"observable names must be among {OBSERVABLES}, got {name!r}")
    return out
