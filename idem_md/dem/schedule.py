"""Variance-exploding noise schedule (iDEM, Section 3 and Appendix).

The forward process is ``dx_t = g(t) dW_t`` on t in [0, 1], so that
``x_t | x_0 ~ N(x_0, h(t) I)`` with ``h(t) = int_0^t g(s)^2 ds``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["GeometricNoiseSchedule"]


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

    def __repr__(self) -> str:
        return f"GeometricNoiseSchedule(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"
