"""Small file helpers shared by the atomic writers."""

from __future__ import annotations

import os

__all__ = ["regular_file_mode"]


def regular_file_mode() -> int:
    """Permission bits of a newly created regular file under the current umask (0o644 for umask 022).

    ``tempfile.mkstemp`` creates 0o600 files; atomic writers chmod their temporary file to this
    before renaming it, so results are as readable as files written with ``open()``.
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
