"""CUDA graphs for the score network's forward pass in the reverse SDE (``IDEMConfig.cuda_graphs``).

On a GPU the refill is launch-bound: one e3nn forward for a few hundred 4-, 13- or 55-particle
configurations is hundreds of small kernels, ~25 ms of launch overhead per network pass whatever the
particle count (docs/results.md). :class:`GraphedScore` records the forward once per input shape in a
``torch.cuda.CUDAGraph`` and replays it, which removes the per-kernel launch cost. It is used only on
CUDA devices; the CPU path is untouched.

Examples
--------
>>> import torch
>>> from idem_md.nn.graphs import GraphedScore
>>> GraphedScore(lambda x, t: -x, device="cpu")
Traceback (most recent call last):
...
ValueError: device must be a CUDA device for CUDA graphs, got cpu
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

__all__ = ["GraphedScore", "graphed_or_eager"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_WARMUP_CALLS = 3  # eager calls on a side stream before capture (lets lazy init and autotuning happen)


class GraphedScore:
    """``score_fn(x (B, n, d), t (B,)) -> (B, n, d)`` replayed from CUDA graphs, one per input shape.

    The first call with a new ``(x.shape, x.dtype)`` warms ``score_fn`` up on a side stream, captures
    it into a graph with static input and output buffers, and replays it; later calls copy their
    inputs into the buffers and replay. The output is a fresh tensor (a copy of the static buffer), so
    callers may keep it. ``score_fn`` must be a pure function of its inputs without host
    synchronisation (no ``.item()``, no data-dependent shapes) and should run under ``torch.no_grad()``
    (the sampler's ``score`` does); a capture that fails falls back to the eager call with one warning.

    Parameters
    ----------
    score_fn : callable
        The score (working coordinates; ``x`` in working length units, ``t`` in ``[0, 1]``).
    device : str or torch.device
        The CUDA device the inputs live on.
    max_graphs : int
        Shapes kept at most (each holds its own static buffers); the oldest is dropped beyond that.
    """

    def __init__(self, score_fn: ScoreFn, device: str | torch.device, max_graphs: int = 4):
        device = torch.device(device)
        if device.type != "cuda":
            raise ValueError(f"device must be a CUDA device for CUDA graphs, got {device}")
        if isinstance(max_graphs, bool) or not isinstance(max_graphs, int) or max_graphs < 1:
            raise ValueError(f"max_graphs must be a positive int, got {max_graphs!r}")
        self.score_fn, self.device, self.max_graphs = score_fn, device, max_graphs
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._pool = None  # one memory pool shared by this object's graphs
        self.eager = False  # True once a capture failed: every call is eager from then on
        self.captures = 0
        self.replays = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.eager or x.device != self.device:
            return self.score_fn(x, t)
        key = (tuple(x.shape), x.dtype, tuple(t.shape), t.dtype)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(x, t, key)
            if entry is None:
                return self.score_fn(x, t)
        graph, static_x, static_t, static_out = entry
        static_x.copy_(x)
        static_t.copy_(t)
        graph.replay()
        self.replays += 1
        return static_out.clone()

    def _capture(self, x: torch.Tensor, t: torch.Tensor, key: tuple):
        static_x, static_t = x.clone(), t.clone()
        try:
            side = torch.cuda.Stream(device=self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(_WARMUP_CALLS):
                    self.score_fn(static_x, static_t)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            with torch.cuda.graph(graph, pool=self._pool):
                static_out = self.score_fn(static_x, static_t)
        except Exception as exc:  # noqa: BLE001 - any capture failure: keep sampling, eagerly
            warnings.warn(f"CUDA graph capture of the score failed ({type(exc).__name__}: {exc}); "
                          "sampling continues without CUDA graphs", RuntimeWarning, stacklevel=3)
            self.eager = True
            return None
        if len(self._graphs) >= self.max_graphs:
            self._graphs.pop(next(iter(self._graphs)))
        self._graphs[key] = (graph, static_x, static_t, static_out)
        self.captures += 1
        return self._graphs[key]


def graphed_or_eager(score_fn: ScoreFn, device: torch.device, enabled: bool) -> ScoreFn:
    """``GraphedScore(score_fn, device)`` when ``enabled`` and ``device`` is CUDA, else ``score_fn``.

    ``enabled`` on a non-CUDA device (a run trained on a GPU, sampled on a CPU) warns once and
    returns ``score_fn`` unchanged: the CPU path does not use graphs.
    """
    if not enabled:
        return score_fn
    if torch.device(device).type != "cuda":
        warnings.warn(f"cuda_graphs=True has no effect on device {device}; sampling eagerly", RuntimeWarning,
                      stacklevel=2)
        return score_fn
    return GraphedScore(score_fn, device)
