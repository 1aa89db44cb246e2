"""Former home of the sample container and its formats, now :mod:`idem_md.samples` (kept so that
``from idem_md.io import Samples`` and saved files keep working).

Examples
--------
>>> from idem_md.io import Samples
>>> Samples.__module__
'idem_md.samples.container'
"""

from __future__ import annotations

from .samples import (
    REDUCED_LENGTH_IN_ANGSTROM,
    REDUCED_LENGTH_IN_FILES_ANGSTROM,
    REDUCED_LENGTH_IN_NM,
    SAMPLES_FORMAT_VERSION,
    SUPPORTED_SUFFIXES,
    Samples,
    check_output_path,
    compute_energies,
    new_output_dir,
)

__all__ = [
    "check_output_path",
    "new_output_dir",
    "Samples",
    "compute_energies",
    "SAMPLES_FORMAT_VERSION",
    "SUPPORTED_SUFFIXES",
    "REDUCED_LENGTH_IN_NM",
    "REDUCED_LENGTH_IN_ANGSTROM",
    "REDUCED_LENGTH_IN_FILES_ANGSTROM",
]
