"""A small registry of named targets: ``get_energy("lj13")``."""

from __future__ import annotations

import re
from typing import Callable

from .base import Energy
from .double_well import MultiDoubleWell
from .gmm import GaussianMixture
from .lennard_jones import LennardJonesCluster

__all__ = ["get_energy", "register_energy", "available_energies"]

_REGISTRY: dict[str, Callable[..., Energy]] = {
    "gmm40": lambda **kw: GaussianMixture.gmm40(**kw),
    "dw4": lambda **kw: MultiDoubleWell(4, 2, **kw),
    "lj13": lambda **kw: LennardJonesCluster(13, 3, **kw),
    "lj55": lambda **kw: LennardJonesCluster(55, 3, **kw),
    "aldp": lambda **kw: _alanine_dipeptide(**kw),
    "alaninedipeptide": lambda **kw: _alanine_dipeptide(**kw),
}
# Families: any particle count, e.g. "lj38" or "dw8".
_PATTERNS: list[tuple[re.Pattern, Callable[[int], Callable[..., Energy]]]] = [
    (re.compile(r"lj(\d+)"), lambda n: (lambda **kw: LennardJonesCluster(n, 3, **kw))),
    (re.compile(r"dw(\d+)"), lambda n: (lambda **kw: MultiDoubleWell(n, 2, **kw))),
]


def _alanine_dipeptide(**kw) -> Energy:
    """Alanine dipeptide in vacuum (ff14SB, ``temperature`` in kelvin, default 300); imports OpenMM."""
    from .alanine import AlanineDipeptide

    return AlanineDipeptide(**kw)


def available_energies() -> list[str]:
    """Registered names (the families ``ljN`` and ``dwN`` accept any N >= 2)."""
    return sorted(_REGISTRY)


def _normalise(name: str) -> str:
    """The registry key of a name: lower case without ``-`` and ``_`` (``"LJ-13"`` -> ``"lj13"``)."""
    return name.lower().replace("-", "").replace("_", "")


def register_energy(name: str, factory: Callable[..., Energy]) -> None:
    """Register ``factory(**kwargs) -> Energy`` under ``name``; looked up like every name (case, ``-`` and ``_``
    ignored), so ``register_energy("my_dw", f)`` is found by ``get_energy("my_dw")`` and ``get_energy("MY-DW")``.

    >>> register_energy("my_gmm", lambda **kw: get_energy("gmm40", **kw))
    >>> get_energy("my_gmm", kT=2.0).kT
    2.0
    """
    if not isinstance(name, str) or not _normalise(name):
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable (**kwargs) -> Energy, got {type(factory).__name__}")
    _REGISTRY[_normalise(name)] = factory


def get_energy(name: str, **kwargs) -> Energy:
    """Build a registered target by name.

    Parameters
    ----------
    name : str
        ``"gmm40"``, ``"dw4"``, ``"lj13"``, ``"lj55"``, ``"ljN"`` / ``"dwN"``, or ``"aldp"``
        (alias ``"alanine_dipeptide"``: alanine dipeptide in vacuum, nm and kT, ``temperature=`` kelvin).
    **kwargs
        Passed to the energy's constructor (for example ``kT=2.0``).

    Examples
    --------
    >>> get_energy("lj13").dim
    39
    >>> get_energy("LJ-55").n_particles
    55
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {available_energies()}, got {type(name).__name__}")
    key = _normalise(name)
    if key in _REGISTRY:
        energy = _REGISTRY[key](**kwargs)
    else:
        for pattern, family in _PATTERNS:
            m = pattern.fullmatch(key)
            if m and int(m.group(1)) >= 2:
                energy = family(int(m.group(1)))(**kwargs)
                break
        else:
            raise ValueError(
                f"unknown system {name!r}; known: {', '.join(available_energies())} (or ljN / dwN for N >= 2)"
            )
    energy.name = key
    return energy
