"""The command line's edge: user errors, out-of-memory and Ctrl-C become one line on stderr, never a traceback."""

from __future__ import annotations

import sys
import warnings

from ._common import CLIError

__all__ = ["run_guarded"]


def run_guarded(prog: str, func, *args) -> int:
    """``func(*args)`` at a command-line edge: user errors, out-of-memory and Ctrl-C become one line on
    stderr (``PROG: error: ...``) and exit code 2 (130 for Ctrl-C), never a traceback. Returns the exit
    code (``func``'s own when it returns an int, else 0). The examples' ``__main__`` blocks use it too."""
    from ..checkpoint import CheckpointError
    from ..energies.base import EnergyEvaluationError
    from ..runlock import RunLockedError

    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *rest, **kw: print(f"{prog}: warning: {_one_line(message)}",
                                                                      file=sys.stderr, flush=True)
            result = func(*args)
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except (CLIError, ValueError, TypeError, FileNotFoundError, FileExistsError, CheckpointError, RunLockedError,
            NotImplementedError, EnergyEvaluationError, FloatingPointError, IsADirectoryError,
            PermissionError, MemoryError) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the allocator's: torch.OutOfMemoryError, "DefaultCPUAllocator: can't allocate"
        if not _is_out_of_memory(exc):
            raise
        print(f"{prog}: error: out of memory ({_one_line(exc)[:200]}); reduce batch_size, num_mc_samples, "
              "estimator_chunk_size, sample_batch_size or -n", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return (type(exc).__name__ == "OutOfMemoryError" or "DefaultCPUAllocator" in text
            or "out of memory" in text.lower())


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
