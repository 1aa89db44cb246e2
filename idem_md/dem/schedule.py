"""Variance-exploding noise schedule (iDEM, Section 3 and Appendix).

The forward process is ``dx_t = g(t) dW_t`` on t in [0, 1], so that
``x_t | x_0 ~ N(x_0, h(t) I)`` with ``h(t) = int_0^t g(s)^2 ds``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["GRID_SIGMA_LO_FRACTION", "GeometricNoiseSchedule", "TIME_GRIDS", "default_grid_sigma_lo", "time_grid"]

#: Names accepted by :func:`time_grid`.
TIME_GRIDS = ("uniform", "edm", "log_sigma")
#: The ``"edm"`` / ``"log_sigma"`` grids stop at most this fraction of ``sigma(1)`` above sigma = 0
#: (:func:`default_grid_sigma_lo`). LJ-55's ``sigma_min = 0.5`` made the last step a jump from 0.5 to 0
#: that broke every sample (median energy 3.6e5; docs/results.md, session 9).
GRID_SIGMA_LO_FRACTION = 0.01


class GeometricNoiseSchedule:
    r"""Geometric VE schedule between ``sigma_min`` and ``sigma_max``.

    .. math::

        g(t) = \sigma_{min} \left(\tfrac{\sigma_{max}}{\sigma_{min}}\right)^{t}
               \sqrt{2 \ln(\sigma_{max}/\sigma_{min})}, \qquad
        h(t) = \sigma_{min}^2 \left[\left(\tfrac{\sigma_{max}}{\sigma_{min}}\right)^{2t} - 1\right]

    Both in the sampler's working coordinates (reduced length units, divided by
    the config's ``coordinate_scale``).

    Parameters
    ----------
    sigma_min, sigma_max : float
        ``0 < sigma_min < sigma_max``.

    Examples
    --------
    >>> s = GeometricNoiseSchedule(0.01, 2.0)
    >>> round(float(s.h(torch.tensor(1.0))), 4)
    3.9999
    """

    def __init__(self, sigma_min: float, sigma_max: float):
        if not (isinstance(sigma_min, (int, float)) and isinstance(sigma_max, (int, float))):
            raise TypeError("sigma_min and sigma_max must be floats")
        if not (0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def g(self, t: torch.Tensor) -> torch.Tensor:
        """Diffusion coefficient g(t), same shape as ``t``."""
        return self.sigma_min * torch.exp(t * self._log_ratio) * math.sqrt(2.0 * self._log_ratio)

    def h(self, t: torch.Tensor) -> torch.Tensor:
        """Variance h(t) of the forward perturbation kernel, same shape as ``t``."""
        return self.sigma_min**2 * torch.expm1(2.0 * t * self._log_ratio)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise standard deviation ``sqrt(h(t))`` (working length), same shape as ``t``."""
        return self.h(t).sqrt()

    def t_of_h(self, h: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`h`: the time at which the variance is ``h >= 0`` (working length squared)."""
        return torch.log1p(h / self.sigma_min**2) / (2.0 * self._log_ratio)

    def __repr__(self) -> str:
        return f"GeometricNoiseSchedule(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


def default_grid_sigma_lo(schedule: GeometricNoiseSchedule) -> float:
    """Last nonzero noise level of the ``"edm"`` and ``"log_sigma"`` grids when none is given (working length).

    ``min(sigma_min, GRID_SIGMA_LO_FRACTION * sigma(1))``: the schedule's ``sigma_min`` where it is small
    (GMM-40, DW-4, LJ-13), a hundredth of the largest noise level where it is not (LJ-55's 0.5 of 4).

    >>> default_grid_sigma_lo(GeometricNoiseSchedule(0.01, 2.0)), round(default_grid_sigma_lo(GeometricNoiseSchedule(0.5, 4.0)), 4)
    (0.01, 0.0397)
    """
    s_hi = float(schedule.sigma(torch.tensor(1.0, dtype=torch.float64)))
    return min(schedule.sigma_min, GRID_SIGMA_LO_FRACTION * s_hi)


def time_grid(schedule: GeometricNoiseSchedule, steps: int, kind: str = "uniform", *, t_end: float = 0.0,
              rho: float = 7.0, sigma_lo: float | None = None) -> torch.Tensor:
    r"""Decreasing integration times from 1 to ``t_end``, ``(steps + 1,)`` float64.

    Parameters
    ----------
    schedule : GeometricNoiseSchedule
        Maps the noise levels of ``"edm"`` and ``"log_sigma"`` to times.
    steps : int
        Number of intervals.
    kind : {"uniform", "edm", "log_sigma"}
        ``"uniform"``: uniform in t (iDEM's grid; for the geometric schedule this is uniform in
        log sigma except near t = 0, so with ``sigma_min = 1e-5`` most steps lie far below any
        physical length). ``"edm"``: Karras et al. (2022), Eq. 5,
        :math:`\sigma_i = (\sigma_{hi}^{1/\rho} + \tfrac{i}{N-1}(\sigma_{lo}^{1/\rho} - \sigma_{hi}^{1/\rho}))^\rho`,
        between uniform in sigma (``rho = 1``) and geometric: compared with ``"uniform"`` it moves
        steps from the smallest noise levels to large t, where ``g(t)`` and ``h(t)`` change
        fastest. ``"log_sigma"``: geometric in sigma (the ``rho -> inf`` limit), from ``sigma(1)``
        down to ``sigma_min`` only. For ``t_end = 0`` the noise levels run from ``sigma(1)`` to the
        schedule's ``sigma_min`` over ``steps`` points and the last step goes to ``t = 0``
        (``sigma = 0``); otherwise they run from ``sigma(1)`` to ``sigma(t_end)`` over ``steps + 1``.
    t_end : float
        Last time, in ``[0, 1)``.
    rho : float
        Exponent of the ``"edm"`` grid (> 0; 7 in EDM).
    sigma_lo : float, optional
        For ``t_end = 0``: the last nonzero noise level of ``"edm"`` and ``"log_sigma"`` (working
        length), from which one step goes to sigma = 0. None: :func:`default_grid_sigma_lo`.

    Examples
    --------
    >>> s = GeometricNoiseSchedule(1e-5, 1.0)
    >>> [round(float(t), 3) for t in time_grid(s, 4, "uniform")]
    [1.0, 0.75, 0.5, 0.25, 0.0]
    >>> g = time_grid(s, 4, "edm")
    >>> float(g[0]), float(g[-1]), bool((g[1:] < g[:-1]).all())
    (1.0, 0.0, True)
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if kind not in TIME_GRIDS:
        raise ValueError(f"time grid must be one of {TIME_GRIDS}, got {kind!r}")
    if not 0.0 <= t_end < 1.0:
        raise ValueError(f"t_end must be in [0, 1), got {t_end!r}")
    if kind == "uniform":
        return torch.linspace(1.0, t_end, steps + 1, dtype=torch.float64)
    if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be a finite positive number, got {rho!r}")
    f64 = torch.float64
    s_hi = float(schedule.sigma(torch.tensor(1.0, dtype=f64)))
    if t_end == 0.0:
        s_lo = default_grid_sigma_lo(schedule) if sigma_lo is None else float(sigma_lo)
        if not (math.isfinite(s_lo) and 0.0 < s_lo < s_hi):
            raise ValueError(f"sigma_lo must be in (0, sigma(1) = {s_hi:.4g}), got {sigma_lo!r}")
    else:
        s_lo = float(schedule.sigma(torch.tensor(t_end, dtype=f64)))
    n_pts = steps if t_end == 0.0 else steps + 1
    if n_pts == 1:  # one step straight to t_end
        return torch.tensor([1.0, t_end], dtype=f64)
    u = torch.linspace(0.0, 1.0, n_pts, dtype=f64)
    if kind == "edm":
        sig = (s_hi ** (1 / rho) + u * (s_lo ** (1 / rho) - s_hi ** (1 / rho))) ** rho
    else:  # log_sigma
        sig = torch.exp(math.log(s_hi) + u * (math.log(s_lo) - math.log(s_hi)))
    t = schedule.t_of_h(sig * sig).clamp(0.0, 1.0)
    t[0] = 1.0
    if t_end == 0.0:
        t = torch.cat([t, torch.zeros(1, dtype=f64)])
    else:
        t[-1] = t_end
    return t
