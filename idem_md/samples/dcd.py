"""DCD sample files (+ a ``.pdb`` topology and a ``.json`` sidecar with the same stem), through mdtraj.

Lengths: the DCD and PDB hold Angstrom, with **one reduced length unit = one Angstrom**
(:data:`~idem_md.units.REDUCED_LENGTH_IN_FILES_ANGSTROM`, the same convention as ``.xyz``), and real
systems in their own unit converted to Angstrom (an OpenMM target's nanometres as 10 A per nm). mdtraj
holds nanometres in memory, so :func:`to_mdtraj` gives it ``x * file_angstrom_per_unit * NM_PER_ANGSTROM``.
Sidecars of format version 1 (idem_md before the single convention) mark files that held one reduced
unit as one nanometre; they are read back with that scale.

The ``.pdb`` is the topology (one residue per particle, element Ar, residue named after the system, e.g.
``LJ`` or ``DW``) and is needed to read the ``.dcd``; the ``.json`` sidecar restores energies, metadata,
the spatial dimension and dtypes, and records the frame count so that a truncated DCD is detected.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..units import ANGSTROM_PER_NM, NM_PER_ANGSTROM
from ._common import (DTYPES, SAMPLES_FORMAT_VERSION, check_version, dtype_name, file_angstrom_per_unit, pad3,
                      residue_name, unpad)
from .container import Samples

if TYPE_CHECKING:
    import mdtraj

__all__ = ["to_mdtraj", "nm_per_length_unit", "write_dcd", "read_dcd"]

_SIDECAR_FORMAT = "idem_md.samples"


def nm_per_length_unit(length_unit: Any) -> float:
    """Nanometres that mdtraj holds per unit of ``length_unit`` (0.1 for reduced systems and Angstrom).

    >>> nm_per_length_unit("reduced"), nm_per_length_unit("nm")
    (0.1, 1.0)
    """
    return file_angstrom_per_unit(length_unit) * NM_PER_ANGSTROM


def to_mdtraj(samples: Samples) -> "mdtraj.Trajectory":
    """``samples`` as an :class:`mdtraj.Trajectory` (CPU, float32): see :meth:`Samples.to_mdtraj`."""
    import mdtraj as md

    if len(samples) == 0:
        raise ValueError("cannot build an mdtraj.Trajectory from 0 samples")
    top = md.Topology()
    chain = top.add_chain()
    resname = residue_name(samples.metadata.get("system"))
    for i in range(samples.n_particles):
        res = top.add_residue(resname, chain, resSeq=i + 1)
        top.add_atom("Ar", md.element.argon, res)
    scale = nm_per_length_unit(samples.length_unit)
    xyz = pad3(samples.positions.detach().cpu().double().numpy()) * scale  # (N, n, 3) nm
    return md.Trajectory(xyz.astype(np.float32), top)


def write_dcd(samples: Samples, tmp_dcd: Path, tmp_pdb: Path, tmp_json: Path) -> None:
    """Write the ``.dcd``, ``.pdb`` and ``.json`` of ``samples`` to the three (temporary) paths."""
    traj = to_mdtraj(samples)
    traj.save_dcd(str(tmp_dcd), force_overwrite=True)
    traj[0].save_pdb(str(tmp_pdb), force_overwrite=True)
    sidecar = {
        "format": _SIDECAR_FORMAT,
        "format_version": SAMPLES_FORMAT_VERSION,
        "n_frames": len(samples),
        "n_particles": samples.n_particles,
        "spatial_dim": samples.spatial_dim,
        "length_unit": samples.length_unit,
        "dtype": dtype_name(samples.positions.dtype),
        "energies_dtype": dtype_name(samples.energies.dtype) if samples.energies is not None else None,
        "energies": None if samples.energies is None else samples.energies.detach().cpu().double().tolist(),
        "metadata": samples.metadata,
    }
    tmp_json.write_text(json.dumps(sidecar))


def read_dcd(path: Path, spatial_dim: int | None, length_unit: str | None = None) -> Samples:
    """Read a ``.dcd`` with its ``.pdb`` (required) and ``.json`` sidecar (optional)."""
    import mdtraj as md

    pdb = path.with_suffix(".pdb")
    if not pdb.is_file():
        raise FileNotFoundError(f"reading {path} needs its topology {pdb}, which does not exist")
    side_path = path.with_suffix(".json")
    side = _read_sidecar(side_path) if side_path.is_file() else None
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (no DCD header)")
    header_frames = _dcd_header_frames(path)
    try:
        traj = md.load_dcd(str(path), top=str(pdb))
    except (OSError, ValueError, IndexError) as err:
        raise ValueError(f"could not read {path} as DCD with topology {pdb}: {err}") from err
    if header_frames is not None and header_frames != traj.n_frames:
        raise ValueError(f"{path} is truncated: its header lists {header_frames} frames but {traj.n_frames} were read")
    if side is not None:
        _check_sidecar_matches(side, traj, path, side_path)
    pos = traj.xyz.astype(np.float64) / _nm_per_unit_in_file(side, length_unit)  # (N, n, 3) own unit
    pos = unpad(pos, None if side is None else side["spatial_dim"], spatial_dim, path)
    if side is None:
        meta = {} if length_unit in (None, "reduced") else {"length_unit": str(length_unit)}
        return Samples(torch.from_numpy(pos).float(), None, meta)
    dtype = DTYPES.get(str(side.get("dtype")), torch.float32)
    energies = side.get("energies")
    e = None
    if energies is not None:
        e = torch.tensor(energies, dtype=DTYPES.get(str(side.get("energies_dtype")), torch.float64))
    try:
        return Samples(torch.from_numpy(pos).to(dtype), e, side.get("metadata") or {})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{side_path} does not match {path}: {err}") from err


def _nm_per_unit_in_file(side: dict[str, Any] | None, length_unit: str | None) -> float:
    """mdtraj nanometres per coordinate unit of the file's samples."""
    if side is None:
        return nm_per_length_unit(length_unit)
    if int(side["format_version"]) < 2:  # version 1: one reduced (or any) length unit was one nanometre
        return ANGSTROM_PER_NM * NM_PER_ANGSTROM
    return nm_per_length_unit(side.get("length_unit", (side.get("metadata") or {}).get("length_unit")))


def _check_sidecar_matches(side: dict[str, Any], traj: "mdtraj.Trajectory", path: Path, side_path: Path) -> None:
    if side["n_frames"] != traj.n_frames:
        raise ValueError(
            f"{path} holds {traj.n_frames} frames but {side_path} records {side['n_frames']} (truncated file?)"
        )
    if side["n_particles"] != traj.n_atoms:
        raise ValueError(f"{path} holds {traj.n_atoms} atoms but {side_path} records {side['n_particles']}")


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        side = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"sidecar {path} is not valid JSON: {err}") from err
    if not isinstance(side, dict) or side.get("format") != _SIDECAR_FORMAT:
        raise ValueError(f"{path} is not an idem_md sample sidecar (expected format {_SIDECAR_FORMAT!r})")
    missing = {"format_version", "n_frames", "n_particles", "spatial_dim"} - set(side)
    if missing:
        raise ValueError(f"sidecar {path} lacks {sorted(missing)}")
    check_version(int(side["format_version"]), path)
    return side


def _dcd_header_frames(path: Path) -> int | None:
    """Frame count (NSET) in a CHARMM DCD header, or None when the header is not recognised."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12:
        raise ValueError(f"{path} is truncated: {len(head)} bytes, shorter than a DCD header")
    for endian in "<>":
        marker, cord, nset = struct.unpack(endian + "i4si", head)
        if marker == 84 and cord == b"CORD":
            return nset
    return None
