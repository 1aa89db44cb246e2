"""Shared test helpers: the external reference files beside the checkout."""

import os
from pathlib import Path

import pytest

#: ../shared/reference beside the checkout (Klein et al. MCMC test splits); CI has it there.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def require_reference(name: str) -> Path:
    """The path of reference file ``name``. Skip when ../shared/reference is not beside the checkout;
    FAIL under ``CI=true`` when the directory is there but the file is not (a broken reference set must
    not skip silently). Not failing on an absent directory is deliberate: whether every CI machine has
    ../shared beside its clone is not verified, and a red CI run lands nothing."""
    path = REFERENCE / name
    if not path.is_file():
        message = f"reference file not found: {path} (../shared/reference beside the checkout)"
        if os.environ.get("CI", "").lower() == "true" and REFERENCE.is_dir():
            pytest.fail(message + "; the directory exists, so CI=true requires the file")
        pytest.skip(message)
    return path
