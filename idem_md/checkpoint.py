"""Atomic, safe checkpoint files.

Checkpoints are written with :func:`torch.save` to a temporary file in the
target directory, flushed with ``fsync`` and moved into place with
``os.replace``, so a crash never leaves a partial checkpoint under the final
name. They are read with ``torch.load(weights_only=True)``, which only
reconstructs tensors and plain Python containers and never executes code.

:func:`sampler_state`, :func:`save_sampler` and :func:`load_sampler` are what
:meth:`IDEMSampler.state_dict`, :meth:`~IDEMSampler.save` and :meth:`~IDEMSampler.load` do:
the history is stored as plain dicts (:meth:`OuterIterationRecord.to_dict`) and read back
into records, older checkpoints' dicts included.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._files import regular_file_mode

if TYPE_CHECKING:
    from .energies.base import Energy
    from .sampler import IDEMSampler

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "atomic_save", "load_checkpoint",
           "sampler_state", "save_sampler", "load_sampler"]

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


# ------------------------------------------------------------- IDEMSampler checkpoints
def sampler_state(sampler: "IDEMSampler") -> dict[str, Any]:
    """The checkpoint payload of ``sampler``: plain data and tensors only (a collective under torch.distributed)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "energy": sampler.energy.identity(),
        "config": sampler.config.to_dict(),
        "network": sampler.network.state_dict(),
        "network_class": type(sampler.network).__name__,
        "optimizer": sampler.optimizer.state_dict(),
        "buffer": sampler.buffer.state_dict(),
        "generator": sampler.generator.get_state(),
        "rank_generators": sampler.dist.gather_objects(sampler.generator.get_state().cpu()),
        "outer_iteration": sampler.outer_iteration,
        "inner_step": sampler.inner_step,
        "partial": dict(sampler._partial),
        "counters": dict(sampler.counters),
        "nonfinite": dict(sampler.nonfinite),
        "refill": sampler.refill.state_dict(),
        "history": [r.to_dict() if hasattr(r, "to_dict") else dict(r) for r in sampler.history],
        "density": None if sampler.density is None else sampler.density.to_payload(),
    }


def save_sampler(sampler: "IDEMSampler", path: str | os.PathLike) -> Path:
    """Write ``sampler``'s checkpoint atomically to ``path``; under torch.distributed only rank 0 writes."""
    state = sampler_state(sampler)  # collective: every rank takes part
    if sampler.dist.is_main:
        atomic_save(state, path)
    sampler.dist.barrier()
    return Path(path)


def _checkpoint_energy(path, ident: dict[str, Any], energy: "Energy | str | None") -> "Energy":
    """The target to restore onto: ``energy``, or the registered system the checkpoint names; refuses another system."""
    from .energies.registry import get_energy

    if energy is None:
        try:
            energy = get_energy(ident["name"])
        except ValueError:
            raise CheckpointError(f"{path} was trained on {ident['name']!r}, which is not a registered system; "
                                  "pass energy= explicitly") from None
    elif isinstance(energy, str):
        energy = get_energy(energy)
    mine = energy.identity()
    diff = sorted(k for k in set(ident) | set(mine) if ident.get(k) != mine.get(k))
    if diff:
        detail = ", ".join(f"{k}: checkpoint {ident.get(k)!r} vs given {mine.get(k)!r}" for k in diff)
        raise CheckpointError(f"{path} is a checkpoint for another system ({detail})")
    return energy


def _restore_generator(sampler: "IDEMSampler", payload: dict[str, Any]) -> None:
    """This rank's saved generator state; another number of ranks or device type: a fresh deterministic seed."""
    gens = payload.get("rank_generators") or [payload["generator"]]
    if len(gens) == sampler.dist.world_size:  # generator states are CPU byte tensors
        try:
            sampler.generator.set_state(gens[sampler.dist.rank].cpu())
            return
        except RuntimeError:  # a CUDA generator's state on a CPU generator, or the reverse
            pass
    sampler.generator.manual_seed(sampler._rank_seed() + int(payload["outer_iteration"]))


def _restore_training_state(sampler: "IDEMSampler", payload: dict[str, Any], path) -> None:
    """Weights, optimiser, buffer, counters, history and the density model from ``payload``."""
    from .training import OuterIterationRecord

    if payload.get("network_class") != type(sampler.network).__name__:
        raise CheckpointError(f"{path} holds a {payload.get('network_class')} network, the config builds "
                              f"{type(sampler.network).__name__}")
    try:
        sampler.network.load_state_dict(payload["network"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: network shape does not match the configured network: {str(exc)[:300]}") from None
    sampler.optimizer.load_state_dict(payload["optimizer"])
    sampler.buffer.load_state_dict({k: v.to(sampler.device) if torch.is_tensor(v) else v
                                    for k, v in payload["buffer"].items()})
    sampler.outer_iteration = int(payload["outer_iteration"])
    sampler.inner_step = int(payload.get("inner_step", 0))
    sampler._partial = dict(payload.get("partial", {"loss": 0.0, "ess": 0.0}))
    sampler.counters.update(payload["counters"])
    sampler.nonfinite.update(payload["nonfinite"])
    if payload.get("refill") is not None:  # checkpoints from before the adaptive refill: the fixed size
        sampler.refill.load_state_dict(payload["refill"])
    try:
        sampler.history = [OuterIterationRecord.from_dict(r) for r in payload["history"]]
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable history ({exc})") from None
    if payload.get("density") is not None:  # checkpoints from before the density model have none
        from .dem.density import DensityModel

        sampler.density = DensityModel.from_payload(payload["density"])


def load_sampler(cls: "type[IDEMSampler]", path: str | os.PathLike, energy: "Energy | str | None" = None,
                 device: Any = None) -> "IDEMSampler":
    """A ``cls`` (:class:`~idem_md.IDEMSampler`) restored from the checkpoint at ``path``.

    Raises :class:`CheckpointError` for another system, another network, or an unreadable file.
    """
    from .config import IDEMConfig

    payload = load_checkpoint(path)
    energy = _checkpoint_energy(path, payload["energy"], energy)
    sampler = cls(energy, IDEMConfig.from_dict(payload["config"]), device=device)
    _restore_training_state(sampler, payload, path)
    _restore_generator(sampler, payload)
    return sampler
