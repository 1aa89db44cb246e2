"""Shared test helpers: the external reference files beside the checkout."""

import os
from pathlib import Path

import pytest

#: ../shared/reference beside the checkout (Klein et al. MCMC test splits); CI has it there.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def require_reference(name: str) -> Path:
    """The path of reference file ``name``; skip when it is absent, but FAIL under ``CI=true``,
    where ../shared sits beside the checkout, so that the reference tests cannot skip silently there."""
    path = REFERENCE / name
    if not path.is_file():
        message = f"reference file not found: {path} (../shared/reference beside the checkout)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message)
    return path
