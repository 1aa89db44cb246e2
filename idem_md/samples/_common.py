"""Shared pieces of the sample container and its formats: validation, versions, dtypes, lengths in files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import json_default as _json_default
from ..units import ANGSTROM_PER_NM, REDUCED_LENGTH_IN_FILES_ANGSTROM

__all__ = [
    "SAMPLES_FORMAT_VERSION",
    "SUPPORTED_SUFFIXES",
    "FILE_ANGSTROM_PER_LENGTH_UNIT",
    "file_angstrom_per_unit",
]

#: Version written into every file; readers refuse newer versions. Version 2: one length convention in
#: every format (:data:`~idem_md.units.REDUCED_LENGTH_IN_FILES_ANGSTROM`); version-1 ``.dcd`` files held
#: reduced lengths as nanometres and are still read that way.
SAMPLES_FORMAT_VERSION: int = 2
#: Path suffixes understood by :meth:`Samples.save` and :meth:`Samples.load`.
SUPPORTED_SUFFIXES: tuple[str, ...] = (".xyz", ".dcd", ".npz")
#: Angstrom written into .xyz / .dcd / .pdb files per unit of each ``Energy.length_unit``: reduced systems
#: as the numbers themselves (1 reduced unit = 1 A in every format), real systems in their engine's unit.
FILE_ANGSTROM_PER_LENGTH_UNIT: dict[str, float] = {
    "reduced": REDUCED_LENGTH_IN_FILES_ANGSTROM,
    "angstrom": 1.0,
    "nm": ANGSTROM_PER_NM,
}

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


def file_angstrom_per_unit(length_unit: Any) -> float:
    """Angstrom in a trajectory file per unit of ``length_unit`` (``"reduced"``, ``"nm"`` or ``"angstrom"``).

    >>> file_angstrom_per_unit("nm"), file_angstrom_per_unit("reduced")
    (10.0, 1.0)
    """
    key = "reduced" if length_unit is None else str(length_unit).lower()
    if key not in FILE_ANGSTROM_PER_LENGTH_UNIT:
        raise ValueError(f"length_unit must be one of {sorted(FILE_ANGSTROM_PER_LENGTH_UNIT)}, got {length_unit!r}")
    return FILE_ANGSTROM_PER_LENGTH_UNIT[key]


def check_finite(x: torch.Tensor, name: str) -> None:
    """``x``: (N, k); names the first offending rows."""
    if x.numel() and not bool(torch.isfinite(x).all()):
        rows = torch.nonzero(~torch.isfinite(x).all(1)).flatten()[:5].tolist()
        raise ValueError(f"{name} contains NaN or infinite values (rows {rows}...)")


def check_energies(e: Any, positions: torch.Tensor) -> torch.Tensor:
    """``e`` as a validated ``(N,)`` floating tensor on the positions' device."""
    if not isinstance(e, torch.Tensor):
        try:
            e = torch.as_tensor(np.asarray(e), device=positions.device)
        except (TypeError, ValueError) as err:
            raise TypeError(f"energies must be a (N,) torch.Tensor or None, got {type(e).__name__}") from err
    if not e.is_floating_point():
        raise TypeError(f"energies must be floating point, got dtype {e.dtype}")
    if tuple(e.shape) != (positions.shape[0],):
        raise ValueError(f"energies must have shape ({positions.shape[0]},) to match positions, got {tuple(e.shape)}")
    if e.device != positions.device:
        raise ValueError(f"energies are on {e.device} but positions on {positions.device}")
    check_finite(e.reshape(-1, 1), "energies")
    return e


def normalise_metadata(metadata: Any) -> dict[str, Any]:
    """A plain-JSON deep copy of ``metadata`` (None -> ``{}``)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict of plain JSON data, got {type(metadata).__name__}")
    bad = [k for k in metadata if not isinstance(k, str)]
    if bad:
        raise TypeError(f"metadata keys must be str, got {bad[:3]!r}")
    try:
        return json.loads(json.dumps(metadata, default=_json_default))
    except (TypeError, ValueError) as err:
        raise TypeError(f"metadata must hold plain JSON data (str, numbers, bools, None, lists, dicts): {err}") from err


def check_positive_int_or_none(v: Any, name: str) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
        raise ValueError(f"{name} must be a positive int or None, got {v!r}")


def pad3(x: np.ndarray) -> np.ndarray:
    """``(N, n, d) -> (N, n, 3)`` with zero columns for d < 3."""
    d = x.shape[2]
    if d > 3:
        raise ValueError(f"trajectory formats hold at most 3 coordinates per particle, got spatial_dim={d}")
    return np.concatenate([x, np.zeros(x.shape[:2] + (3 - d,), dtype=x.dtype)], axis=2) if d < 3 else x


def unpad(pos: np.ndarray, recorded: Any, asked: int | None, path: Path) -> np.ndarray:
    """Cut ``(N, n, 3)`` file coordinates back to the recorded or asked spatial dimension."""
    if recorded is not None:
        d = int(recorded)
        if not 1 <= d <= 3:
            raise ValueError(f"{path} records an invalid spatial dimension {recorded!r}")
    else:
        d = asked if asked is not None and asked < 3 else 3
    if d < 3 and np.any(pos[:, :, d:] != 0):
        raise ValueError(f"{path}: coordinates beyond the first {d} are not all zero, so it is not a {d}D system")
    return pos[:, :, :d]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_version(version: int, path: Path) -> None:
    if version > SAMPLES_FORMAT_VERSION:
        raise ValueError(
            f"{path} was written with sample format version {version}; "
            f"this idem_md reads up to {SAMPLES_FORMAT_VERSION}"
        )


def residue_name(system: Any) -> str:
    letters = re.sub(r"[^A-Za-z]", "", str(system)) if system else ""
    return letters.upper()[:3] or "PRT"
