"""Dispatch of sample files to their format modules by suffix (:mod:`.npz`, :mod:`.xyz`, :mod:`.dcd`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .container import Samples
from .dcd import read_dcd, write_dcd
from .npz import is_idem_npz, read_npz, read_position_array, write_npz
from .paths import suffix_of
from .xyz import read_xyz, write_xyz

__all__ = ["WRITERS", "read"]

#: suffix -> writer(samples, *temporary paths); the paths are :func:`~idem_md.samples.paths.output_targets`.
WRITERS: dict[str, Callable[..., None]] = {".npz": write_npz, ".xyz": write_xyz, ".dcd": write_dcd}


def read(path: Path, n_particles: int | None, spatial_dim: int | None, length_unit: str | None = None) -> Samples:
    """Read any supported sample file (see :meth:`Samples.load`) without the final shape checks."""
    suffix = ".npy" if path.suffix.lower() == ".npy" else suffix_of(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such sample file: {path}")
    if suffix == ".npy" or (suffix == ".npz" and not is_idem_npz(path)):
        samples = read_position_array(path, n_particles, spatial_dim)
        if length_unit not in (None, "reduced"):
            samples.metadata["length_unit"] = str(length_unit)
        return samples
    if suffix == ".npz":
        return read_npz(path)
    if suffix == ".xyz":
        return read_xyz(path, spatial_dim, length_unit)
    return read_dcd(path, spatial_dim, length_unit)
