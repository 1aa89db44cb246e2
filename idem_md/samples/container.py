"""The sample container :class:`Samples`: configurations, optional energies, JSON metadata.

Formats live in :mod:`idem_md.samples.formats` (``.npz``, ``.xyz``, ``.dcd`` + ``.pdb``, plain ``.npy``);
:meth:`Samples.save` and :meth:`Samples.load` pick one by the path's suffix.

Examples
--------
>>> import torch
>>> s = Samples(torch.zeros(5, 4, 2), metadata={"system": "dw4", "kT": 1.0})
>>> len(s), s.flat().shape
(5, torch.Size([5, 8]))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._files import staged_files
from ._common import check_energies, check_finite, check_positive_int_or_none, normalise_metadata
from .energies import compute_energies, energies_of
from .paths import output_targets, suffix_of

if TYPE_CHECKING:  # heavy optional imports, only for annotations
    import mdtraj

    from ..energies.base import Energy

__all__ = ["Samples"]


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
        check_finite(p.reshape(p.shape[0], p.shape[1] * p.shape[2]), "positions")
        if self.energies is not None:
            self.energies = check_energies(self.energies, p)
        self.metadata = normalise_metadata(self.metadata)

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

    @property
    def length_unit(self) -> str:
        """Unit of the positions: ``metadata["length_unit"]``, ``"reduced"`` when absent (``Energy.length_unit``)."""
        return str(self.metadata.get("length_unit", "reduced"))

    def flat(self) -> torch.Tensor:
        """Positions as ``(N, dim)``, particle-major (the layout of the reference files)."""
        return self.positions.reshape(len(self), self.dim)

    def to(self, device: torch.device | str) -> "Samples":
        """A copy with positions and energies on ``device``."""
        e = None if self.energies is None else self.energies.to(device)
        return Samples(self.positions.to(device), e, dict(self.metadata))

    def with_energies(self, energy: "Energy", recompute: bool = False) -> "Samples":
        """These samples with energies: the ones held, or computed with ``energy`` when there are none
        (or ``recompute``); ``self`` itself when nothing had to be computed."""
        if self.energies is not None and not recompute:
            return self
        return Samples(self.positions, energies_of(self, energy, recompute=True), dict(self.metadata))

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
        x = _as_configurations(array, n, d)
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
            energies = compute_energies(x, energy)
            metadata.setdefault("system", energy.name)
            metadata.setdefault("kT", energy.kT)
            if getattr(energy, "length_unit", "reduced") != "reduced":
                metadata.setdefault("length_unit", energy.length_unit)
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
        from .dcd import to_mdtraj

        return to_mdtraj(self)

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
        suffix = suffix_of(path)
        if suffix != ".npz" and len(self) == 0:
            raise ValueError(f"cannot write 0 samples to {suffix} ({path}); use .npz for empty sets")
        targets = output_targets(path, suffix)
        from .formats import WRITERS

        with staged_files(targets, overwrite) as temps:
            WRITERS[suffix](self, *temps)
        return targets

    # -------------------------------------------------------------------- load
    @classmethod
    def load(
        cls, path: str | os.PathLike, n_particles: int | None = None, spatial_dim: int | None = None,
        length_unit: str | None = None,
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
        length_unit : {"reduced", "nm", "angstrom"}, optional
            The unit of the coordinates to return (``Energy.length_unit``) for trajectory files that
            do not record one (files from other programs); default ``"reduced"``: one unit is one
            Angstrom in the file (:data:`~idem_md.units.REDUCED_LENGTH_IN_FILES_ANGSTROM`). Files
            written by :meth:`save` record their unit and ignore it.

        Raises
        ------
        FileNotFoundError
            ``path`` (or the ``.pdb`` a ``.dcd`` needs) does not exist.
        ValueError
            Unknown suffix, unreadable/empty/truncated file, or a shape other
            than the one asked for.
        """
        from .formats import read

        path = Path(path)
        check_positive_int_or_none(n_particles, "n_particles")
        check_positive_int_or_none(spatial_dim, "spatial_dim")
        samples = read(path, n_particles, spatial_dim, length_unit)
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


def _as_configurations(array: Any, n: int, d: int) -> torch.Tensor:
    """``array`` as a floating ``(N, n, d)`` tensor (flat rows read particle-major)."""
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
    return x
