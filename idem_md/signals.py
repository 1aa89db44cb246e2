"""SIGINT / SIGTERM during training: a flag checked between inner steps, so that the loop saves first.

:meth:`IDEMSampler.fit <idem_md.IDEMSampler.fit>` with a ``checkpoint_path`` installs
:class:`StopSignals` for the duration of the outer loop: the first signal only sets
:attr:`StopSignals.received`; the loop saves a checkpoint at the next inner-step boundary and
calls :meth:`StopSignals.raise_now` (``KeyboardInterrupt`` for SIGINT, ``SystemExit(143)`` for
SIGTERM). A second signal stops at once. The previous handlers come back on exit.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["StopSignals"]


class StopSignals:
    """Context manager turning SIGINT/SIGTERM into a flag (only in the main thread, and only when ``enabled``)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: int | None = None  # the first signal's number
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.received is not None:  # a second signal: stop at once
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> "StopSignals":
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False

    def raise_now(self) -> None:
        """Raise what the received signal means: ``SystemExit(128 + SIGTERM)`` or ``KeyboardInterrupt``."""
        if self.received == signal.SIGTERM:
            raise SystemExit(128 + signal.SIGTERM)
        raise KeyboardInterrupt
