"""Sample sets and trajectory files: :class:`Samples`, saved as ``.npz``, ``.xyz`` or ``.dcd``.

A :class:`Samples` holds configurations in the energy's reduced length unit,
optional energies in its reduced energy unit, and plain JSON metadata (system
name, kT, where the samples came from, energy evaluations spent, ...).

File formats (the suffix of the path picks one):

``.npz``
    ``positions`` (N, n, d) and ``energies`` (N,) exactly as held (same dtype),
    ``metadata`` as a JSON string and ``format_version``; read with
    ``allow_pickle=False``. Lossless.
``.xyz``
    Extended XYZ written through :func:`ase.io.write`, one frame per sample,
    every particle an argon atom. Lengths follow the ASE bridge: **one reduced
    length unit is one Angstrom** (:data:`REDUCED_LENGTH_IN_ANGSTROM`). Each
    frame's info carries its energy (``energy=``, which ASE reads back into a
    single-point calculator); the first frame also carries the frame count
    (``idem_n_frames``, so that a file cut at a frame boundary is detected),
    ``idem_spatial_dim`` (2D systems are padded with z = 0 and cut back on
    load), the dtypes, the metadata in full (``idem_metadata``, base64 of its JSON, because extxyz
    comment lines cannot hold arbitrary quotes) and, for readability, the
    metadata entries that are plain words or numbers under their own key.
    Positions are written with 8 decimals.
``.dcd`` (+ ``.pdb`` + ``.json`` with the same stem)
    Coordinates through mdtraj. Lengths follow the OpenMM bridge: **one reduced
    length unit is one nanometre** (:data:`REDUCED_LENGTH_IN_NM`); mdtraj holds
    nanometres and itself writes Angstrom into the DCD and PDB files, so a
    reduced length of 1 appears as 10 A in the file and reads back as 1 nm = 1
    reduced unit (float32 precision). The ``.pdb`` beside it is the topology
    (one residue per particle, element Ar, residue named after the system,
    e.g. ``LJ`` or ``DW``) and is needed to read the ``.dcd``; the ``.json``
    sidecar restores energies, metadata, the spatial dimension and dtypes, and
    records the frame count so that a truncated DCD is detected.

Writers never overwrite an existing file unless ``overwrite=True`` (checked for
every file they would create, before anything is written) and never leave a
partial file behind: each file is written to a temporary name in the same
directory and moved into place with :func:`os.replace` only once all of them
were written.

Examples
--------
>>> import torch
>>> s = Samples(torch.zeros(5, 4, 2), metadata={"system": "dw4", "kT": 1.0})
>>> len(s), s.flat().shape
(5, torch.Size([5, 8]))
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._files import json_default as _json_default
from ._files import staged_files as _staged
from .units import REDUCED_LENGTH_IN_ANGSTROM, REDUCED_LENGTH_IN_NM

if TYPE_CHECKING:  # heavy optional imports, only for annotations
    import mdtraj

    from .energies.base import Energy

__all__ = [
    "check_output_path",
    "new_output_dir",
    "Samples",
    "SAMPLES_FORMAT_VERSION",
    "SUPPORTED_SUFFIXES",
    "REDUCED_LENGTH_IN_NM",
    "REDUCED_LENGTH_IN_ANGSTROM",
]

#: Version written into every file; readers refuse newer versions.
SAMPLES_FORMAT_VERSION: int = 1
#: Path suffixes understood by :meth:`Samples.save` and :meth:`Samples.load`.
SUPPORTED_SUFFIXES: tuple[str, ...] = (".xyz", ".dcd", ".npz")

_SIDECAR_FORMAT = "idem_md.samples"
_ENERGY_CHUNK = 4096  # configurations per energy call in from_array (bounds memory for LJ-55)
_INFO_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INFO_WORD = re.compile(r"^[A-Za-z0-9_.+\-:/]+$")
# info keys that ASE gives a meaning of its own (calculator results, cell)
_RESERVED_INFO = {
    "energy", "free_energy", "pbc", "properties", "lattice", "stress", "virial", "forces", "dipole", "charges",
    "magmom",
}
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


# --------------------------------------------------------------------------- Samples
@dataclass(eq=False)  # tensors have no single truth value; compare fields explicitly
class Samples:
    """Configurations with optional energies and metadata, in reduced units.

    Parameters
    ----------
    positions : torch.Tensor
        ``(N, n_particles, spatial_dim)`` floating-point, finite, in the
        energy's reduced length unit.
    energies : torch.Tensor or None
        ``(N,)`` floating-point, finite, in the energy's reduced energy unit,
        on the same device as ``positions``; or None when unknown.
    metadata : dict
        Plain JSON data (str keys; str/int/float/bool/None, lists and dicts of
        them; numpy and one-element torch scalars are converted). Stored as a
        normalised copy, so a saved and reloaded metadata compares equal.
        Conventional keys: ``system``, ``kT``, ``source`` (``"idem"``, ``"md"``,
        ``"reference"``), ``energy_evaluations``.
    """

    positions: torch.Tensor
    energies: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.positions
        if not isinstance(p, torch.Tensor):
            raise TypeError(
                f"positions must be a torch.Tensor of shape (N, n_particles, spatial_dim), got {type(p).__name__}"
                " (use Samples.from_array for numpy or flat (N, dim) arrays)"
            )
        if p.ndim != 3:
            raise ValueError(
                f"positions must have shape (N, n_particles, spatial_dim), got {tuple(p.shape)}"
                " (use Samples.from_array to reshape a flat (N, dim) array)"
            )
        if not p.is_floating_point():
            raise TypeError(f"positions must be floating point (float32 or float64), got dtype {p.dtype}")
        if p.shape[1] < 1 or p.shape[2] < 1:
            raise ValueError(f"positions must have at least one particle and one coordinate, got {tuple(p.shape)}")
        _check_finite(p.reshape(p.shape[0], p.shape[1] * p.shape[2]), "positions")
        if self.energies is not None:
            self.energies = _check_energies(self.energies, p)
        self.metadata = _normalise_metadata(self.metadata)

    # ------------------------------------------------------------------ shape
    def __len__(self) -> int:
        return self.positions.shape[0]

    @property
    def n_particles(self) -> int:
        return self.positions.shape[1]

    @property
    def spatial_dim(self) -> int:
        return self.positions.shape[2]

    @property
    def dim(self) -> int:
        """Coordinates per configuration, ``n_particles * spatial_dim``."""
        return self.n_particles * self.spatial_dim

    def flat(self) -> torch.Tensor:
        """Positions as ``(N, dim)``, particle-major (the layout of the reference files)."""
        return self.positions.reshape(len(self), self.dim)

    def to(self, device: torch.device | str) -> "Samples":
        """A copy with positions and energies on ``device``."""
        e = None if self.energies is None else self.energies.to(device)
        return Samples(self.positions.to(device), e, dict(self.metadata))

    def subset(self, idx: Any) -> "Samples":
        """The samples at ``idx`` (int, slice, index sequence/tensor or boolean mask), as a new Samples."""
        if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool):
            idx = [int(idx)]
        if not isinstance(idx, slice):
            idx = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
            if idx.numel() == 0:
                idx = idx.long()
            if idx.dtype != torch.bool and (idx.is_floating_point() or idx.is_complex()):
                raise TypeError(f"idx must hold integers or booleans, got dtype {idx.dtype}")
            if idx.ndim != 1:
                raise ValueError(f"idx must be one-dimensional, got shape {tuple(idx.shape)}")
            if idx.dtype == torch.bool and idx.shape[0] != len(self):
                raise ValueError(f"boolean idx must have length {len(self)}, got {idx.shape[0]}")
            idx = idx.to(self.positions.device)
        e = None if self.energies is None else self.energies[idx]
        return Samples(self.positions[idx], e, dict(self.metadata))

    # ------------------------------------------------------------ construction
    @classmethod
    def from_array(
        cls,
        array: Any,
        n_particles: int,
        spatial_dim: int,
        energy: "Energy | None" = None,
        centre: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> "Samples":
        """Build Samples from an ``(N, dim)`` or ``(N, n, d)`` numpy array or tensor.

        Parameters
        ----------
        array : numpy.ndarray or torch.Tensor
            Configurations in reduced length units; a flat row is read
            particle-major, ``row.reshape(n_particles, spatial_dim)``, like the
            reference files. Integer arrays are cast to the default float dtype.
        n_particles, spatial_dim : int
            Shape of one configuration.
        energy : Energy, optional
            When given, energies are computed with ``energy.energy`` (no grad,
            in chunks) on the stored (possibly centred) positions, and
            ``system``/``kT`` are added to the metadata unless already there.
        centre : bool
            Subtract each configuration's centre of mass (equal masses), as
            needed for the DW-4 reference file.
        metadata : dict, optional
            See :class:`Samples`.
        """
        for name, v in (("n_particles", n_particles), ("spatial_dim", spatial_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        n, d = int(n_particles), int(spatial_dim)
        if isinstance(array, torch.Tensor):
            x = array.detach()
        else:
            try:
                x = torch.as_tensor(np.asarray(array))
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"array must be a numeric numpy array or torch.Tensor, got {type(array).__name__}"
                ) from err
        if not x.is_floating_point():
            if x.dtype == torch.bool or x.is_complex():
                raise TypeError(f"array must be real numeric, got dtype {x.dtype}")
            x = x.to(torch.get_default_dtype())
        if x.ndim == 2 and x.shape[1] == n * d:
            x = x.reshape(x.shape[0], n, d)
        elif not (x.ndim == 3 and tuple(x.shape[1:]) == (n, d)):
            raise ValueError(
                f"array must have shape (N, {n * d}) or (N, {n}, {d}) for {n} particles in {d}D, "
                f"got {tuple(x.shape)}"
            )
        if centre:
            x = x - x.mean(dim=1, keepdim=True)
        metadata = dict(metadata or {})
        energies = None
        if energy is not None:
            if (energy.n_particles, energy.spatial_dim) != (n, d):
                raise ValueError(
                    f"energy {energy.name!r} is for {energy.n_particles} particles in {energy.spatial_dim}D, "
                    f"but n_particles={n}, spatial_dim={d}"
                )
            with torch.no_grad():
                chunks = [energy.energy(c) for c in torch.split(x, _ENERGY_CHUNK)] if len(x) else []
            energies = torch.cat(chunks).to(x.device) if chunks else x.new_zeros(0)
            metadata.setdefault("system", energy.name)
            metadata.setdefault("kT", energy.kT)
        return cls(x.contiguous(), energies, metadata)

    # ------------------------------------------------------------------ mdtraj
    def to_mdtraj(self) -> "mdtraj.Trajectory":
        """This sample set as an :class:`mdtraj.Trajectory` (CPU, float32).

        One residue per particle, each with one argon atom; the residue is named
        after ``metadata["system"]`` (``"lj13"`` -> ``LJ``, ``"dw4"`` -> ``DW``;
        ``PRT`` when unknown). Coordinates map one reduced length unit to one
        nanometre (:data:`REDUCED_LENGTH_IN_NM`, the OpenMM bridge's mapping);
        1D and 2D systems are padded with zeros up to z. No unit cell.
        """
        import mdtraj as md

        if len(self) == 0:
            raise ValueError("cannot build an mdtraj.Trajectory from 0 samples")
        top = md.Topology()
        chain = top.add_chain()
        resname = _residue_name(self.metadata.get("system"))
        for i in range(self.n_particles):
            res = top.add_residue(resname, chain, resSeq=i + 1)
            top.add_atom("Ar", md.element.argon, res)
        xyz = _pad3(self.positions.detach().cpu().double().numpy()) * REDUCED_LENGTH_IN_NM  # (N, n, 3) nm
        return md.Trajectory(xyz.astype(np.float32), top)

    # -------------------------------------------------------------------- save
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> list[Path]:
        """Write to ``path``; its suffix picks the format (see the module docstring).

        Parameters
        ----------
        path : str or PathLike
            ``*.npz``, ``*.xyz`` or ``*.dcd`` (the latter also writes
            ``<stem>.pdb`` and ``<stem>.json`` beside it).
        overwrite : bool
            Replace existing files; otherwise any existing target raises
            :class:`FileExistsError` before anything is written.

        Returns
        -------
        list of Path
            Every file written.
        """
        path = Path(path)
        suffix = _suffix(path)
        if suffix != ".npz" and len(self) == 0:
            raise ValueError(f"cannot write 0 samples to {suffix} ({path}); use .npz for empty sets")
        targets = _targets(path, suffix)
        with _staged(targets, overwrite) as temps:
            if suffix == ".npz":
                self._write_npz(temps[0])
            elif suffix == ".xyz":
                self._write_xyz(temps[0])
            else:
                self._write_dcd(*temps)
        return targets

    def _write_npz(self, tmp: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "positions": self.positions.detach().cpu().numpy(),
            "metadata": np.array(json.dumps(self.metadata)),
            "format_version": np.array(SAMPLES_FORMAT_VERSION),
        }
        if self.energies is not None:
            arrays["energies"] = self.energies.detach().cpu().numpy()
        with open(tmp, "wb") as fh:  # a file object: np.savez would otherwise append ".npz" to the temp name
            np.savez(fh, **arrays)

    def _write_xyz(self, tmp: Path) -> None:
        import ase.io
        from ase import Atoms

        pos = _pad3(self.positions.detach().cpu().double().numpy()) * REDUCED_LENGTH_IN_ANGSTROM  # (N, n, 3) A
        energies = None if self.energies is None else self.energies.detach().cpu().double().numpy()
        symbols = f"Ar{self.n_particles}"
        frames = []
        for i in range(len(self)):
            atoms = Atoms(symbols, positions=pos[i], pbc=False)
            if energies is not None:
                atoms.info["energy"] = float(energies[i])
            if i == 0:
                atoms.info.update(self._xyz_header())
            frames.append(atoms)
        ase.io.write(str(tmp), frames, format="extxyz")

    def _xyz_header(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        for k, v in self.metadata.items():  # readable copy of the simple entries
            if not _INFO_KEY.match(k) or k.lower() in _RESERVED_INFO or k.startswith("idem_"):
                continue
            if isinstance(v, bool) or (isinstance(v, str) and _INFO_WORD.match(v)):
                info[k] = v
            elif isinstance(v, (int, float)) and np.isfinite(v):
                info[k] = v
        info.update(
            idem_format_version=SAMPLES_FORMAT_VERSION,
            idem_n_frames=len(self),
            idem_spatial_dim=self.spatial_dim,
            idem_dtype=_dtype_name(self.positions.dtype),
            idem_energies_dtype=_dtype_name(self.energies.dtype) if self.energies is not None else "none",
            idem_metadata=base64.urlsafe_b64encode(json.dumps(self.metadata).encode()).decode().rstrip("="),
        )
        return info

    def _write_dcd(self, tmp_dcd: Path, tmp_pdb: Path, tmp_json: Path) -> None:
        traj = self.to_mdtraj()
        traj.save_dcd(str(tmp_dcd), force_overwrite=True)
        traj[0].save_pdb(str(tmp_pdb), force_overwrite=True)
        sidecar = {
            "format": _SIDECAR_FORMAT,
            "format_version": SAMPLES_FORMAT_VERSION,
            "n_frames": len(self),
            "n_particles": self.n_particles,
            "spatial_dim": self.spatial_dim,
            "dtype": _dtype_name(self.positions.dtype),
            "energies_dtype": _dtype_name(self.energies.dtype) if self.energies is not None else None,
            "energies": None if self.energies is None else self.energies.detach().cpu().double().tolist(),
            "metadata": self.metadata,
        }
        tmp_json.write_text(json.dumps(sidecar))

    # -------------------------------------------------------------------- load
    @classmethod
    def load(
        cls, path: str | os.PathLike, n_particles: int | None = None, spatial_dim: int | None = None
    ) -> "Samples":
        """Read a file written by :meth:`save` (or a plain extxyz / dcd+pdb from elsewhere).

        Parameters
        ----------
        path : str or PathLike
            ``*.npz``, ``*.xyz`` or ``*.dcd`` (needs ``<stem>.pdb`` beside it;
            ``<stem>.json``, when present, restores energies and metadata); or a plain
            position array, ``*.npy`` or an ``*.npz`` with a ``positions`` array (or a single
            array), of shape ``(N, n*d)`` (particle-major rows, like the reference splits) or
            ``(N, n, d)``, in the energy's length unit: then ``n_particles`` and
            ``spatial_dim`` are required and no energies are read.
        n_particles : int, optional
            Expected particle count; a file holding another count raises
            :class:`ValueError`.
        spatial_dim : int, optional
            Expected coordinates per particle. For files without a recorded
            dimension (from other programs) a value below 3 drops the padded
            axes, which must then be all zero.

        Raises
        ------
        FileNotFoundError
            ``path`` (or the ``.pdb`` a ``.dcd`` needs) does not exist.
        ValueError
            Unknown suffix, unreadable/empty/truncated file, or a shape other
            than the one asked for.
        """
        path = Path(path)
        suffix = ".npy" if path.suffix.lower() == ".npy" else _suffix(path)
        for name, v in (("n_particles", n_particles), ("spatial_dim", spatial_dim)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"{name} must be a positive int or None, got {v!r}")
        if not path.is_file():
            raise FileNotFoundError(f"no such sample file: {path}")
        if suffix == ".npy" or (suffix == ".npz" and not _is_idem_npz(path)):
            samples = _read_position_array(path, n_particles, spatial_dim)
        elif suffix == ".npz":
            samples = _read_npz(path)
        elif suffix == ".xyz":
            samples = _read_xyz(path, spatial_dim)
        else:
            samples = _read_dcd(path, spatial_dim)
        if n_particles is not None and samples.n_particles != n_particles:
            raise ValueError(
                f"{path} holds {samples.n_particles} particles per configuration, "
                f"but n_particles={n_particles} was asked"
            )
        if spatial_dim is not None and samples.spatial_dim != spatial_dim:
            raise ValueError(
                f"{path} holds {samples.spatial_dim}D coordinates, but spatial_dim={spatial_dim} was asked"
            )
        return samples

    def __repr__(self) -> str:
        e = "None" if self.energies is None else f"({len(self.energies)},)"
        return (
            f"Samples(N={len(self)}, n_particles={self.n_particles}, spatial_dim={self.spatial_dim}, "
            f"dtype={self.positions.dtype}, energies={e}, metadata={self.metadata!r})"
        )


# -------------------------------------------------------------------- readers
def _is_idem_npz(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as data:
            return "format_version" in data.files
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return True  # let _read_npz report what is wrong with it


def _read_position_array(path: Path, n_particles: int | None, spatial_dim: int | None) -> Samples:
    """A plain ``.npy`` / ``.npz`` array of positions (the reference splits' format)."""
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


def _read_npz(path: Path) -> Samples:
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
    _check_version(version, path)
    try:
        return Samples(
            torch.from_numpy(positions), None if energies is None else torch.from_numpy(energies), metadata
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} holds invalid samples: {err}") from err


def _read_xyz(path: Path, spatial_dim: int | None) -> Samples:
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
    head = frames[0].info
    _check_version(int(head.get("idem_format_version", SAMPLES_FORMAT_VERSION)), path)
    if "idem_n_frames" in head and int(head["idem_n_frames"]) != len(frames):
        raise ValueError(
            f"{path} is truncated: its first frame lists {head['idem_n_frames']} frames but {len(frames)} were read"
        )
    pos = np.stack([a.get_positions() for a in frames]) / REDUCED_LENGTH_IN_ANGSTROM  # (N, n, 3) reduced
    pos = _unpad(pos, head.get("idem_spatial_dim"), spatial_dim, path)
    energies = [_frame_energy(a) for a in frames]
    have = [e is not None for e in energies]
    if any(have) and not all(have):
        raise ValueError(f"{path}: only {sum(have)} of {len(frames)} frames carry an energy")
    metadata: dict[str, Any] = {}
    if "idem_metadata" in head:
        try:
            raw = str(head["idem_metadata"])
            metadata = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: corrupt idem_metadata in the first frame: {err}") from err
    dtype = _DTYPES.get(str(head.get("idem_dtype", "float32")), torch.float32)
    e_dtype = _DTYPES.get(str(head.get("idem_energies_dtype", "float64")), torch.float64)
    e = torch.tensor(energies, dtype=e_dtype) if all(have) else None
    return Samples(torch.from_numpy(pos).to(dtype), e, metadata)


def _frame_energy(atoms: Any) -> float | None:
    if "energy" in atoms.info:  # older ASE keeps it in info
        return float(atoms.info["energy"])
    calc = atoms.calc
    if calc is not None and "energy" in getattr(calc, "results", {}):
        return float(calc.results["energy"])
    return None


def _read_dcd(path: Path, spatial_dim: int | None) -> Samples:
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
        if side["n_frames"] != traj.n_frames:
            raise ValueError(
                f"{path} holds {traj.n_frames} frames but {side_path} records {side['n_frames']} (truncated file?)"
            )
        if side["n_particles"] != traj.n_atoms:
            raise ValueError(f"{path} holds {traj.n_atoms} atoms but {side_path} records {side['n_particles']}")
    pos = traj.xyz.astype(np.float64) / REDUCED_LENGTH_IN_NM  # (N, n, 3) reduced; mdtraj already converted A -> nm
    pos = _unpad(pos, None if side is None else side["spatial_dim"], spatial_dim, path)
    if side is None:
        return Samples(torch.from_numpy(pos).float(), None, {})
    dtype = _DTYPES.get(str(side.get("dtype")), torch.float32)
    energies = side.get("energies")
    e = None
    if energies is not None:
        e = torch.tensor(energies, dtype=_DTYPES.get(str(side.get("energies_dtype")), torch.float64))
    try:
        return Samples(torch.from_numpy(pos).to(dtype), e, side.get("metadata") or {})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{side_path} does not match {path}: {err}") from err


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
    _check_version(int(side["format_version"]), path)
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


# -------------------------------------------------------------------- helpers
def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"unknown sample file suffix {path.suffix!r} in {path}; use one of .xyz, .dcd, .npz")
    return suffix


def _targets(path: Path, suffix: str) -> list[Path]:
    if suffix == ".dcd":
        return [path, path.with_suffix(".pdb"), path.with_suffix(".json")]
    return [path]


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Check, before any work, that :meth:`Samples.save` could write ``path``.

    Returns the files it would write. Raises ``ValueError`` (unknown suffix),
    ``FileNotFoundError`` (missing directory), ``PermissionError`` (a directory this
    process cannot write) or ``FileExistsError`` (a target exists and ``overwrite`` is False).
    """
    path = Path(path)
    targets = _targets(path, _suffix(path))
    for t in targets:
        if not t.parent.is_dir():
            raise FileNotFoundError(f"directory {t.parent} does not exist (writing {t})")
        try:  # a real write: os.access is blind to root on read-only or special file systems
            with tempfile.TemporaryFile(dir=t.parent):
                pass
        except OSError as err:
            raise PermissionError(f"directory {t.parent} is not writable (writing {t}): {err.strerror}") from None
        if t.exists() and not overwrite:
            raise FileExistsError(f"{t} already exists; pass --overwrite (overwrite=True in Python) to replace it")
    return targets


def new_output_dir(out: str | os.PathLike | None, stem: str) -> Path:
    """An empty output folder: ``out`` (created; refused if it exists and is not empty), or, when
    ``out`` is None, a new ``<stem>-N`` folder in the current directory (the first free ``N >= 1``).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     new_output_dir(Path(d) / "results", "unused").is_dir()
    True
    """
    if out is None:
        n = 1
        while (Path.cwd() / f"{stem}-{n}").exists():
            n += 1
        out = Path.cwd() / f"{stem}-{n}"
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} exists and is not empty; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_finite(x: torch.Tensor, name: str) -> None:
    """``x``: (N, k); names the first offending rows."""
    if x.numel() and not bool(torch.isfinite(x).all()):
        rows = torch.nonzero(~torch.isfinite(x).all(1)).flatten()[:5].tolist()
        raise ValueError(f"{name} contains NaN or infinite values (rows {rows}...)")


def _check_energies(e: Any, positions: torch.Tensor) -> torch.Tensor:
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
    _check_finite(e.reshape(-1, 1), "energies")
    return e


def _normalise_metadata(metadata: Any) -> dict[str, Any]:
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


def _pad3(x: np.ndarray) -> np.ndarray:
    """``(N, n, d) -> (N, n, 3)`` with zero columns for d < 3."""
    d = x.shape[2]
    if d > 3:
        raise ValueError(f"trajectory formats hold at most 3 coordinates per particle, got spatial_dim={d}")
    return np.concatenate([x, np.zeros(x.shape[:2] + (3 - d,), dtype=x.dtype)], axis=2) if d < 3 else x


def _unpad(pos: np.ndarray, recorded: Any, asked: int | None, path: Path) -> np.ndarray:
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


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _check_version(version: int, path: Path) -> None:
    if version > SAMPLES_FORMAT_VERSION:
        raise ValueError(
            f"{path} was written with sample format version {version}; "
            f"this idem_md reads up to {SAMPLES_FORMAT_VERSION}"
        )


def _residue_name(system: Any) -> str:
    letters = re.sub(r"[^A-Za-z]", "", str(system)) if system else ""
    return letters.upper()[:3] or "PRT"

