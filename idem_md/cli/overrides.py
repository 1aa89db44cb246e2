"""Config overrides from the command line: ``--config FILE.toml``, ``--set key=value`` and the
training flags that map onto config fields."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from ._common import CLIError

__all__ = ["parse_set_values", "load_config_file", "training_overrides"]


def _parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"true"`` -> True, ``"none"`` -> None, JSON objects, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set_values(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``--set key=value`` items; ``network_options.key=value`` sets one network option.

    >>> parse_set_values(["batch_size=64", "lr=1e-4", "network_options.n_layers=2"])
    {'batch_size': 64, 'lr': 0.0001, 'network_options': {'n_layers': 2}}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--set expects key=value, got {item!r}")
        head, dot, sub = key.strip().partition(".")
        if dot:
            if head != "network_options" or not sub:
                raise CLIError(f"--set: only network_options.<name> may be dotted, got {key!r}")
            out.setdefault("network_options", {})[sub] = _parse_value(value)
        else:
            out[head] = _parse_value(value)
    return out


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read config overrides from a TOML file (top-level keys are config fields;
    an optional ``[network_options]`` table)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config file not found: {path}")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CLIError(f"--config {path} is not valid TOML: {exc}") from None
    return data


def training_overrides(args) -> dict[str, Any]:
    """The config overrides of ``idem-md train``: the TOML file, then ``--set``, then the dedicated flags."""
    overrides: dict[str, Any] = {}
    if args.config:
        overrides.update(load_config_file(args.config))
    sets = parse_set_values(args.set or [])
    if "network_options" in sets and "network_options" in overrides:
        sets["network_options"] = {**overrides["network_options"], **sets["network_options"]}
    overrides.update(sets)
    if args.outer_iterations is not None:
        overrides["outer_iterations"] = args.outer_iterations
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.energy_budget is not None:
        if not (args.energy_budget >= 1 and float(args.energy_budget).is_integer()):
            raise CLIError(f"--energy-budget must be a positive whole number of evaluations, got {args.energy_budget!r}")
        overrides["energy_budget"] = int(args.energy_budget)
    return overrides
