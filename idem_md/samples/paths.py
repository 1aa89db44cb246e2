"""Output paths of sample files: suffixes, the files a save writes, writability checks, new output folders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ._common import SUPPORTED_SUFFIXES

__all__ = ["check_output_path", "new_output_dir", "suffix_of", "output_targets"]


def suffix_of(path: Path) -> str:
    """The lower-case suffix of a sample file path, refused unless it is one of :data:`SUPPORTED_SUFFIXES`."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"unknown sample file suffix {path.suffix!r} in {path}; use one of .xyz, .dcd, .npz")
    return suffix


def output_targets(path: Path, suffix: str) -> list[Path]:
    """Every file :meth:`Samples.save` writes for ``path`` (a ``.dcd`` also writes its ``.pdb`` and ``.json``)."""
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
    targets = output_targets(path, suffix_of(path))
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
