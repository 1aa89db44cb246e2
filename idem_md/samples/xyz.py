"""Extended XYZ sample files, written and read through :mod:`ase.io`.

One frame per sample, every particle an argon atom. Lengths: the file holds Angstrom, with
**one reduced length unit = one Angstrom** (:data:`~idem_md.units.REDUCED_LENGTH_IN_FILES_ANGSTROM`, the
same convention as ``.dcd``), and real systems in their own unit converted to Angstrom
(:data:`~idem_md.samples.FILE_ANGSTROM_PER_LENGTH_UNIT`). Each frame's info carries its energy
(``energy=``, which ASE reads back into a single-point calculator); the first frame also carries the
frame count (``idem_n_frames``, so that a file cut at a frame boundary is detected), ``idem_spatial_dim``
(2D systems are padded with z = 0 and cut back on load), the dtypes, the metadata in full
(``idem_metadata``, base64 of its JSON, because extxyz comment lines cannot hold arbitrary quotes) and, for
readability, the metadata entries that are plain words or numbers under their own key. Positions are
written with 8 decimals.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._common import DTYPES, SAMPLES_FORMAT_VERSION, check_version, dtype_name, file_angstrom_per_unit, pad3, unpad
from .container import Samples

__all__ = ["write_xyz", "read_xyz"]

_INFO_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INFO_WORD = re.compile(r"^[A-Za-z0-9_.+\-:/]+$")
# info keys that ASE gives a meaning of its own (calculator results, cell)
_RESERVED_INFO = {
    "energy", "free_energy", "pbc", "properties", "lattice", "stress", "virial", "forces", "dipole", "charges",
    "magmom",
}


def write_xyz(samples: Samples, tmp: Path) -> None:
    """Write ``samples`` to the (temporary) path ``tmp`` as extended XYZ."""
    import ase.io
    from ase import Atoms

    scale = file_angstrom_per_unit(samples.length_unit)
    pos = pad3(samples.positions.detach().cpu().double().numpy()) * scale  # (N, n, 3) A
    energies = None if samples.energies is None else samples.energies.detach().cpu().double().numpy()
    symbols = f"Ar{samples.n_particles}"
    frames = []
    for i in range(len(samples)):
        atoms = Atoms(symbols, positions=pos[i], pbc=False)
        if energies is not None:
            atoms.info["energy"] = float(energies[i])
        if i == 0:
            atoms.info.update(_header(samples))
        frames.append(atoms)
    ase.io.write(str(tmp), frames, format="extxyz")


def _header(samples: Samples) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for k, v in samples.metadata.items():  # readable copy of the simple entries
        if not _INFO_KEY.match(k) or k.lower() in _RESERVED_INFO or k.startswith("idem_"):
            continue
        if isinstance(v, bool) or (isinstance(v, str) and _INFO_WORD.match(v)):
            info[k] = v
        elif isinstance(v, (int, float)) and np.isfinite(v):
            info[k] = v
    info.update(
        idem_format_version=SAMPLES_FORMAT_VERSION,
        idem_n_frames=len(samples),
        idem_spatial_dim=samples.spatial_dim,
        idem_dtype=dtype_name(samples.positions.dtype),
        idem_energies_dtype=dtype_name(samples.energies.dtype) if samples.energies is not None else "none",
        idem_metadata=base64.urlsafe_b64encode(json.dumps(samples.metadata).encode()).decode().rstrip("="),
    )
    return info


def read_xyz(path: Path, spatial_dim: int | None, length_unit: str | None = None) -> Samples:
    """Read an extended XYZ file (written by :func:`write_xyz` or by another program)."""
    frames = _frames(path)
    head = frames[0].info
    check_version(int(head.get("idem_format_version", SAMPLES_FORMAT_VERSION)), path)
    if "idem_n_frames" in head and int(head["idem_n_frames"]) != len(frames):
        raise ValueError(
            f"{path} is truncated: its first frame lists {head['idem_n_frames']} frames but {len(frames)} were read"
        )
    metadata = _metadata(head, path)
    unit = metadata.get("length_unit", length_unit) if "idem_metadata" in head else length_unit
    pos = np.stack([a.get_positions() for a in frames]) / file_angstrom_per_unit(unit)  # (N, n, 3) own unit
    pos = unpad(pos, head.get("idem_spatial_dim"), spatial_dim, path)
    energies = [_frame_energy(a) for a in frames]
    have = [e is not None for e in energies]
    if any(have) and not all(have):
        raise ValueError(f"{path}: only {sum(have)} of {len(frames)} frames carry an energy")
    if unit not in (None, "reduced"):
        metadata.setdefault("length_unit", unit)
    dtype = DTYPES.get(str(head.get("idem_dtype", "float32")), torch.float32)
    e_dtype = DTYPES.get(str(head.get("idem_energies_dtype", "float64")), torch.float64)
    e = torch.tensor(energies, dtype=e_dtype) if all(have) else None
    return Samples(torch.from_numpy(pos).to(dtype), e, metadata)


def _frames(path: Path) -> list[Any]:
    import ase.io

    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (no extxyz frames)")
    try:
        frames = ase.io.read(str(path), index=":", format="extxyz")
    except Exception as err:  # ASE raises many types (XYZError, IndexError, ValueError, ...) on bad input
        raise ValueError(f"{path} is not a readable extended XYZ file: {type(err).__name__}: {err}") from err
    if not frames:
        raise ValueError(f"{path} holds no extxyz frames")
    counts = {len(a) for a in frames}
    if len(counts) != 1:
        raise ValueError(f"{path} mixes frames with different atom counts {sorted(counts)}")
    return frames


def _metadata(head: dict[str, Any], path: Path) -> dict[str, Any]:
    if "idem_metadata" not in head:
        return {}
    try:
        raw = str(head["idem_metadata"])
        return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: corrupt idem_metadata in the first frame: {err}") from err


def _frame_energy(atoms: Any) -> float | None:
    if "energy" in atoms.info:  # older ASE keeps it in info
        return float(atoms.info["energy"])
    calc = atoms.calc
    if calc is not None and "energy" in getattr(calc, "results", {}):
        return float(calc.results["energy"])
    return None
