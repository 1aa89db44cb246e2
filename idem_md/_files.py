"""Small file helpers shared by the atomic writers."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = ["json_default", "regular_file_mode", "staged_files"]


def regular_file_mode() -> int:
    """Permission bits of a newly created regular file under the current umask (0o644 for umask 022).

    ``tempfile.mkstemp`` creates 0o600 files; atomic writers chmod their temporary file to this
    before renaming it, so results are as readable as files written with ``open()``.
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def staged_files(targets: Sequence[Path], overwrite: bool) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``targets``; move them into place only if the body succeeds."""
    for t in targets:
        if not t.parent.is_dir():
            raise FileNotFoundError(f"directory {t.parent} does not exist (writing {t})")
        if t.is_dir():
            raise IsADirectoryError(f"{t} is a directory")
        if t.exists() and not overwrite:
            raise FileExistsError(f"{t} already exists; pass overwrite=True to replace it")
    temps: list[Path] = []
    try:
        for t in targets:
            fd, name = tempfile.mkstemp(dir=t.parent, prefix=f".{t.stem}.", suffix=f".tmp{t.suffix}")
            os.close(fd)
            temps.append(Path(name))
        yield temps
        mode = regular_file_mode()
        for tmp, t in zip(temps, targets):
            os.chmod(tmp, mode)
            os.replace(tmp, t)
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook for numpy scalars/arrays, one-element tensors and paths."""
    import numpy as np
    import torch

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")
