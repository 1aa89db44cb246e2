"""Shared test helpers: the external reference files (Klein et al. MCMC test splits).

The reference set is looked up, first existing directory wins, in

1. ``$IDEM_MD_REFERENCE`` (a directory; set but not a directory is an error),
2. ``<checkout>/../shared/reference`` (the development layout),
3. ``<origin>/../shared/reference``, ``<origin>`` the local path of the checkout's git
   ``remote.origin.url`` when that is a local directory: CI runs in a fresh clone
   (``git clone . /tmp/ci-check``) that has no ``../shared`` beside it, but its origin does.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
ENV_VAR = "IDEM_MD_REFERENCE"


def _origin_dir(checkout: Path) -> Path | None:
    """The local directory ``remote.origin.url`` of ``checkout`` names, or None (git missing, no
    remote, a network URL)."""
    try:
        out = subprocess.run(["git", "-C", str(checkout), "config", "--get", "remote.origin.url"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    url = out.stdout.strip()
    if out.returncode != 0 or not url:
        return None
    if url.startswith("file://"):
        url = url[len("file://"):]
    origin = Path(url)
    origin = origin if origin.is_absolute() else checkout / origin  # git resolves relative URLs from the checkout
    return origin.resolve() if origin.is_dir() else None


def reference_candidates(checkout: Path = CHECKOUT) -> list[tuple[str, Path]]:
    """``(how it was found, directory)`` for every place the reference set may be, in lookup order."""
    found = []
    if os.environ.get(ENV_VAR):
        found.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser()))
    found.append(("../shared/reference beside the checkout", checkout.parent / "shared" / "reference"))
    origin = _origin_dir(checkout)
    if origin is not None:
        found.append((f"../shared/reference beside the origin {origin}", origin.parent / "shared" / "reference"))
    return found


@functools.lru_cache(maxsize=None)
def reference_dir() -> tuple[Path | None, str]:
    """The reference directory and where it was found, or None and the places tried.

    Raises ValueError when ``$IDEM_MD_REFERENCE`` is set but is not a directory (a typo must not skip).
    """
    candidates = reference_candidates()
    if candidates[0][0] == f"${ENV_VAR}" and not candidates[0][1].is_dir():
        raise ValueError(f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a directory")
    for how, path in candidates:
        if path.is_dir():
            return path, how
    tried = "; ".join(f"{how}: {path}" for how, path in candidates)
    return None, f"no reference directory found (tried {tried}; set {ENV_VAR} to the directory)"


def require_reference(name: str) -> Path:
    """The path of reference file ``name`` in the reference directory (see the module docstring).

    Skips when the file is not there. Under ``CI=true`` a directory that was found but lacks the
    file FAILS (a broken reference set must not skip silently); when no directory is found at
    all the test still skips, with the places tried as the reason (a red CI run lands nothing).
    """
    try:
        directory, how = reference_dir()
    except ValueError as err:
        pytest.fail(str(err))
    if directory is None:
        pytest.skip(f"reference file {name}: {how}")
    path = directory / name
    if not path.is_file():
        message = f"reference file not found: {path} (reference directory from {how})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; the directory exists, so CI=true requires the file")
        pytest.skip(message)
    return path
