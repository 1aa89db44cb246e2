"""Typed result records with a deprecated dict view (for code written against the old string-keyed dicts)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Iterator

__all__ = ["Record"]


class Record:
    """Mixin for result dataclasses: :meth:`to_dict`, and ``rec["name"]`` / ``rec.get`` / ``"name" in rec``
    / ``rec.keys()`` / ``rec.items()`` as a deprecated read-only view of the fields (use attributes)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (nested records become dicts)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def _names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        warnings.warn(f"{type(self).__name__}[{key!r}] is deprecated; use the attribute .{key}",
                      DeprecationWarning, stacklevel=2)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Deprecated: ``getattr(rec, key, default)``."""
        return self[key] if key in self._names() else default

    def __contains__(self, key: object) -> bool:
        return key in self._names()

    def keys(self) -> list[str]:
        return self._names()

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self._names()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def _plain(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v
