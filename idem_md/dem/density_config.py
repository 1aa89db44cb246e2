"""Hyperparameters of the flow-matching CNF density :class:`~idem_md.dem.density.DensityModel`.

:class:`DensityConfig` (validated on construction, every bad field a one-line ``ValueError``
naming it) and :func:`default_density_config`, the settings :meth:`IDEMSampler.fit_density`
uses when none are given. Both are re-exported by :mod:`idem_md.dem.density`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["DensityConfig", "default_density_config"]


def _check_int(name: str, v: Any, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name} must be an int >= {low}, got {v!r}")


def _check_float(name: str, v: Any, low: float, inclusive: bool) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or not (v >= low if inclusive else v > low):
        raise ValueError(f"{name} must be a finite float {'>=' if inclusive else '>'} {low:g}, got {v!r}")


@dataclass(frozen=True)
class DensityConfig:
    """Hyperparameters of :class:`DensityModel`.

    Parameters
    ----------
    network : {"auto", "egnn", "mlp"}
        Vector field; ``"auto"``: :class:`~idem_md.nn.egnn.EGNNVectorField` for particle systems
        (``mean_free=True``), a residual MLP on the flattened coordinates otherwise.
    hidden_dim, n_layers : int
        Width and depth of the network.
    steps : int
        Flow-matching optimiser steps of :meth:`DensityModel.fit`.
    batch_size : int
        Data points (and prior draws) per step.
    lr : float
        Adam learning rate, decayed by a cosine to 1% over ``steps``.
    sigma : float
        Standard deviation of the CFM path noise (scaled coordinates; 0: deterministic paths).
    ot_pairing : bool
        Pair prior and data in each minibatch by exact OT on squared distances (POT's ``ot.emd``).
    method : str
        torchdiffeq solver; ``atol``, ``rtol`` its tolerances.
    divergence : {"auto", "exact", "hutchinson"}
        ``"auto"``: exact (one backward pass per coordinate) up to
        :data:`~idem_md.dem.sde.EXACT_DIVERGENCE_MAX_DIM` coordinates, Hutchinson above.
    hutchinson_probes : int
        Rademacher probes per trajectory (fixed along it), averaged.
    seed : int
        Seeds the network's initialisation and, unless a generator is passed, :meth:`fit`.
    fourier_features : int
        MLP only: add ``sin(2^k z), cos(2^k z)``, ``k < fourier_features``, of every scaled
        coordinate to its input, which lets it resolve modes much narrower than the data's spread
        (GMM-40: its modes are ~20 times narrower than the data).
    """

    network: str = "auto"
    hidden_dim: int = 64
    n_layers: int = 4
    steps: int = 10_000
    batch_size: int = 256
    lr: float = 1e-3
    sigma: float = 0.0
    ot_pairing: bool = True
    method: str = "dopri5"
    atol: float = 1e-5
    rtol: float = 1e-5
    divergence: str = "auto"
    hutchinson_probes: int = 4
    seed: int = 0
    fourier_features: int = 0

    def __post_init__(self) -> None:
        if self.network not in ("auto", "egnn", "mlp"):
            raise ValueError(f"network must be 'auto', 'egnn' or 'mlp', got {self.network!r}")
        for name, low in (("hidden_dim", 1), ("n_layers", 1), ("steps", 0), ("batch_size", 2), ("hutchinson_probes", 1),
                          ("seed", 0), ("fourier_features", 0)):
            _check_int(name, getattr(self, name), low)
        _check_float("lr", self.lr, 0.0, False)
        _check_float("sigma", self.sigma, 0.0, True)
        _check_float("atol", self.atol, 0.0, False)
        _check_float("rtol", self.rtol, 0.0, False)
        if not isinstance(self.ot_pairing, bool):
            raise ValueError(f"ot_pairing must be a bool, got {self.ot_pairing!r}")
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a torchdiffeq solver name such as 'dopri5', got {self.method!r}")
        if self.divergence not in ("auto", "exact", "hutchinson"):
            raise ValueError(f"divergence must be 'auto', 'exact' or 'hutchinson', got {self.divergence!r}")


def default_density_config(mean_free: bool) -> DensityConfig:
    """The settings :meth:`IDEMSampler.fit_density` uses when none are given.

    Particle systems: :class:`DensityConfig`'s defaults (EGNN field, 10,000 steps). On DW-4, 2000 steps
    gave an importance ESS of 0.59 fitted on 5000 long-MD samples and 10,000 gave 0.91; fitted on a
    CPU-preset iDEM run's samples, 0.38 and 0.45 (docs/results.md, session 8); the fit then takes
    ~10 min on one CPU thread for DW-4, longer for larger systems. Vector targets: six octaves of
    Fourier features, 16,000 steps at lr 3e-3. At 4000 steps they fit exact GMM-40 samples to 0.21
    nat of the true NLL (tests/test_density.py; the plain defaults are 0.9 nat off, and 1.5 nat
    without the features, because GMM-40's modes are ~20 times narrower than the data's spread);
    fitted on 5000 exact samples, 4000 steps gave an importance ESS of 0.61 (NLL 7.15, true 6.84)
    and 16,000 gave 0.78 (6.96), a 4-minute fit on one CPU thread (docs/results.md, session 8).
    """
    return DensityConfig() if mean_free else DensityConfig(fourier_features=6, steps=16_000, lr=3e-3)
