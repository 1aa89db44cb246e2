"""``.npz`` sample files (lossless) and plain ``.npy`` / ``.npz`` position arrays (the reference splits).

An idem_md ``.npz`` holds ``positions`` (N, n, d) and ``energies`` (N,) exactly as held (same dtype),
``metadata`` as a JSON string and ``format_version``; it is read with ``allow_pickle=False``. A plain
array file holds positions only, ``(N, n*d)`` (particle-major rows) or ``(N, n, d)``, in the energy's
length unit.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from ._common import SAMPLES_FORMAT_VERSION, check_version
from .container import Samples

__all__ = ["write_npz", "read_npz", "is_idem_npz", "read_position_array"]


def write_npz(samples: Samples, tmp: Path) -> None:
    """Write ``samples`` to the (temporary) path ``tmp`` in the idem_md ``.npz`` layout."""
    arrays: dict[str, np.ndarray] = {
        "positions": samples.positions.detach().cpu().numpy(),
        "metadata": np.array(json.dumps(samples.metadata)),
        "format_version": np.array(SAMPLES_FORMAT_VERSION),
    }
    if samples.energies is not None:
        arrays["energies"] = samples.energies.detach().cpu().numpy()
    with open(tmp, "wb") as fh:  # a file object: np.savez would otherwise append ".npz" to the temp name
        np.savez(fh, **arrays)


def is_idem_npz(path: Path) -> bool:
    """Whether ``path`` is an idem_md ``.npz`` (has ``format_version``); unreadable files count as one,
    so that :func:`read_npz` reports what is wrong with them."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return "format_version" in data.files
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return True


def read_position_array(path: Path, n_particles: int | None, spatial_dim: int | None) -> Samples:
    """A plain ``.npy`` / ``.npz`` array of positions, ``(N, n*d)`` or ``(N, n, d)`` (no energies)."""
    if n_particles is None or spatial_dim is None:
        raise ValueError(f"{path} is a plain position array: pass n_particles and spatial_dim "
                         "(on the command line: --system)")
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as data:
                names = data.files
                if "positions" not in names and len(names) != 1:
                    raise ValueError(f"expected a 'positions' array or a single array, found {sorted(names)}")
                array = np.array(data["positions" if "positions" in names else names[0]])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable position array: {err}") from err
    try:
        return Samples.from_array(array, n_particles, spatial_dim,
                                  metadata={"source": f"position array {path.name}"})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err


def read_npz(path: Path) -> Samples:
    """Read an idem_md ``.npz`` sample file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            missing = {"positions", "metadata", "format_version"} - keys
            if missing:
                raise ValueError(f"missing arrays {sorted(missing)} (found {sorted(keys)})")
            version = int(data["format_version"])
            positions = np.array(data["positions"])
            energies = np.array(data["energies"]) if "energies" in keys else None
            metadata = json.loads(str(data["metadata"]))
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable idem_md .npz sample file: {err}") from err
    check_version(version, path)
    try:
        return Samples(
            torch.from_numpy(positions), None if energies is None else torch.from_numpy(energies), metadata
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} holds invalid samples: {err}") from err
