"""Sample sets and their files: :class:`Samples`, saved as ``.npz``, ``.xyz`` or ``.dcd``.

A :class:`Samples` holds configurations in the energy's length unit (reduced for the benchmarks,
``metadata["length_unit"]`` for real systems), optional energies in its energy unit, and plain JSON
metadata (system name, kT, where the samples came from, energy evaluations spent, ...).

Modules, along the data flow:

* :mod:`.container`: :class:`Samples` (validation, shape, subsets, ``save`` / ``load``);
* :mod:`.energies`: :func:`compute_energies`, the one helper for "energies of these samples";
* :mod:`.npz`, :mod:`.xyz`, :mod:`.dcd`: the formats (and plain ``.npy`` / ``.npz`` position arrays);
* :mod:`.paths`: output paths, :func:`check_output_path`, :func:`new_output_dir`.

File formats (the suffix of the path picks one):

``.npz``
    Lossless: positions and energies exactly as held, metadata as JSON.
``.xyz``
    Extended XYZ through :func:`ase.io.write`, one frame per sample.
``.dcd`` (+ ``.pdb`` + ``.json`` with the same stem)
    Coordinates through mdtraj, the ``.pdb`` topology, a ``.json`` sidecar with energies and metadata.

Lengths: **one convention in every format.** A reduced length unit is one Angstrom in ``.xyz``, ``.dcd``
and ``.pdb`` files (:data:`~idem_md.units.REDUCED_LENGTH_IN_FILES_ANGSTROM`), so the numbers in every file
are the reduced coordinates and the same Samples saved as ``.xyz``, ``.dcd`` and ``.npz`` read back as the
same coordinates (to float32 precision for ``.dcd``). Real systems keep their engine's unit (an OpenMM
target's nanometres are written as 10 A per nm). docs/units.md has the table.

Writers never overwrite an existing file unless ``overwrite=True`` (checked for every file they would
create, before anything is written) and never leave a partial file behind: each file is written to a
temporary name in the same directory and moved into place with :func:`os.replace` only once all of them
were written.

Examples
--------
>>> import torch
>>> s = Samples(torch.zeros(5, 4, 2), metadata={"system": "dw4", "kT": 1.0})
>>> len(s), s.flat().shape
(5, torch.Size([5, 8]))
"""

from __future__ import annotations

from ..units import REDUCED_LENGTH_IN_ANGSTROM, REDUCED_LENGTH_IN_FILES_ANGSTROM, REDUCED_LENGTH_IN_NM
from ._common import FILE_ANGSTROM_PER_LENGTH_UNIT, SAMPLES_FORMAT_VERSION, SUPPORTED_SUFFIXES, file_angstrom_per_unit
from .container import Samples
from .energies import ENERGY_CHUNK, compute_energies, energies_of
from .paths import check_output_path, new_output_dir

__all__ = [
    "Samples",
    "compute_energies",
    "energies_of",
    "ENERGY_CHUNK",
    "check_output_path",
    "new_output_dir",
    "SAMPLES_FORMAT_VERSION",
    "SUPPORTED_SUFFIXES",
    "FILE_ANGSTROM_PER_LENGTH_UNIT",
    "file_angstrom_per_unit",
    "REDUCED_LENGTH_IN_FILES_ANGSTROM",
    "REDUCED_LENGTH_IN_NM",
    "REDUCED_LENGTH_IN_ANGSTROM",
]
