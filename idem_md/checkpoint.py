"""Atomic, safe checkpoint files.

Checkpoints are written with :func:`torch.save` to a temporary file in the
target directory, flushed with ``fsync`` and moved into place with
``os.replace``, so a crash never leaves a partial checkpoint under the final
name. They are read with ``torch.load(weights_only=True)``, which only
reconstructs tensors and plain Python containers and never executes code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ._files import regular_file_mode

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "atomic_save", "load_checkpoint"]

CHECKPOINT_FORMAT = "idem_md-checkpoint"
CHECKPOINT_VERSION = 1
#: Sections every sampler checkpoint holds.
REQUIRED_SECTIONS = ("energy", "config", "network", "optimizer", "buffer", "generator", "outer_iteration",
                     "counters", "nonfinite", "history")


class CheckpointError(ValueError):
    """A checkpoint file cannot be used (wrong format, version, system or network)."""


def atomic_save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, regular_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint written by :func:`atomic_save`.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    CheckpointError
        Not an idem_md checkpoint, unreadable, or written by a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or contains disallowed objects
        raise CheckpointError(f"{path} is not a readable idem_md checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an idem_md checkpoint (missing format marker {CHECKPOINT_FORMAT!r})")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this idem_md reads versions <= {CHECKPOINT_VERSION}: upgrade idem_md"
        )
    missing = [k for k in REQUIRED_SECTIONS if k not in payload]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: an incomplete or foreign checkpoint")
    return payload
