"""Batch shards on threads: the NumPy engine's training step on every core it is given.

A training step is, per layer and time step, one small matrix product (BLAS) and a dozen or two element-wise
NumPy calls on (B, H)..(B, 4H) arrays. OpenBLAS spreads the matrix products over the cores, but every
element-wise call runs on one core, so on a 2-core machine about 40 % of an LSTM step cannot use the second
core, and a 16-core machine is hardly faster than a 2-core one (docs/performance.md). NumPy releases the
GIL inside its ufuncs and BLAS calls, so Python threads can run that work side by side.

The B sequences of a batch never interact: every operation of the forward pass, the loss and BPTT works
row by row, except the sums over rows that make the parameter gradients. So the batch is split into S
*shards* of consecutive columns, and each shard runs :func:`model.loss_and_grads` on its rows, on its own
thread, with its own :class:`recurrence.Workspace` and ONE BLAS thread (the shard threads are the
parallelism; BLAS threads on top would only fight them for the cores). The shards' results add up to the
unsplit step exactly -- same numbers, summed in another order -- because

    L = (1/M) sum_n m_n nll_n = sum_s (1/M) sum_{n in s} m_n nll_n = sum_s L_s
    dL/dθ = sum_s dL_s/dθ

when every shard divides by the whole batch's count M of real (unmasked) characters, not its own
(``softmax_cross_entropy(..., count=M)``): padded line batches, whose shards hold different numbers of real
characters, need no weights. Every random draw of the step (dropout, the regularisers' masks) is made once
for the whole batch, by the calling thread, with the same Generator calls in the same order as the unsplit
step (:func:`model.draw_masks`); each shard takes its rows (``StepMasks.rows``; weight drop's masks on W_h
are the whole batch's), so the sharded step sees the same masks and leaves the Generator in the same state.
AR and TAR, like the loss, divide by the whole batch's M. The
carried state is split by rows and the shards' final states are stacked back. The gradients are summed in
shard order on the calling thread, so the result does not depend on which thread finishes first.

A shard must be big enough to pay for itself. Each shard thread runs its own Python loop of small NumPy
calls and needs the GIL between them; every call hands the GIL to the other thread and back, and on a
virtual machine waking a waiting thread costs tens of microseconds. With (B_s, H) blocks of a few thousand
numbers that hand-over costs more than the call, and two threads are slower than one (measured:
docs/performance.md). :func:`plan_shards` therefore shards only when every shard's (B_s, H) block holds at
least ``MIN_SHARD_ELEMENTS`` numbers; otherwise the step runs unsplit -- the plain path of ``model.py`` --
with BLAS on all the threads.

BLAS threads are set at run time with ``threadpoolctl`` (the scientific-Python stack's package for it: it
finds OpenBLAS, MKL or BLIS whatever their symbol prefixes). Without it installed the engine never shards
and leaves BLAS alone.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..nn import model as charmodel
from ..nn.recurrence import Workspace

MIN_SHARD_ELEMENTS = 8192   # rows x hidden units per shard; smaller shards lose more to the GIL than they gain


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    """``--threads``: None means every core available to the process."""
    return available_cores() if threads is None else threads


_controller = None


def blas_controller():
    """threadpoolctl's controller of the loaded BLAS libraries (built once), or None without threadpoolctl."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController()
    return _controller or None


def blas_threads(n: int):
    """A context in which NumPy's BLAS uses ``n`` threads (a no-op without threadpoolctl)."""
    controller = blas_controller()
    return contextlib.nullcontext() if controller is None else controller.limit(limits=n, user_api="blas")


def plan_shards(batch: int, threads: int, min_rows: int) -> list[slice]:
    """Split ``batch`` columns into at most ``threads`` shards of at least ``min_rows`` each (as equal as
    possible, consecutive); one shard -- the whole batch -- when it is too small, or when BLAS threads cannot
    be controlled."""
    n = max(1, min(threads, batch // max(min_rows, 1)))
    if n > 1 and blas_controller() is None:
        n = 1
    bounds = np.linspace(0, batch, n + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def shard_state(state: list, rows: slice) -> list:
    """The carried state's rows of one shard: per layer, a tuple of (B_s, H) views."""
    return [tuple(part[rows] for part in layer) for layer in state]


def stack_states(states: list) -> list:
    """The shards' final states, stacked back by rows in shard order: per layer, a tuple of (B, H) arrays."""
    return [tuple(np.concatenate(parts, axis=0) for parts in zip(*layers, strict=True))
            for layers in zip(*states, strict=True)]


def real_count(batch, dtype) -> float:
    """M, the characters the loss is a mean over: as ``softmax_cross_entropy`` counts them."""
    return float(batch.ids.size if batch.mask is None else batch.mask.astype(dtype).sum())


def min_shard_rows(hidden: int, min_elements: int = MIN_SHARD_ELEMENTS) -> int:
    """The fewest rows a shard of a model with ``hidden`` units may have (at least 1)."""
    return max(1, -(-min_elements // hidden))


class ShardedSteps:
    """Runs a batch's training step (or validation) as shards on ``threads`` threads; see the module doc.

    ``min_rows`` is the fewest rows per shard (``None``: never shard -- the unsplit step with BLAS on every
    thread, the engine as it was before sharding existed; benchmarks compare the two)."""

    def __init__(self, threads: int, min_rows: int | None):
        self.threads, self.min_rows = threads, min_rows
        self.workspaces = [Workspace()]   # one per shard, kept from step to step
        self._pool = None

    def plan(self, batch_size: int) -> list[slice]:
        if self.min_rows is None:
            return [slice(0, batch_size)]
        return plan_shards(batch_size, self.threads, self.min_rows)

    def _map(self, run, shards: list[slice]) -> list:
        """[run(k, rows) for each shard], shard 0 on this thread and the others on the pool, BLAS on one
        thread each; results in shard order."""
        while len(self.workspaces) < len(shards):
            self.workspaces.append(Workspace())
        if self._pool is None:                                   # never more than threads - 1 shards besides ours
            self._pool = ThreadPoolExecutor(max_workers=self.threads - 1, thread_name_prefix="rnnlab-shard")
        with blas_threads(1):
            futures = [self._pool.submit(run, k, rows) for k, rows in enumerate(shards) if k > 0]
            try:
                first = run(0, shards[0])
            finally:
                rest = [future.result() for future in futures]   # wait for every shard, even after an error
        return [first, *rest]

    def loss_and_grads(self, params: dict, config, batch, state: list, dropout_rng=None):
        """-> (loss, grads, final state) of the whole batch, equal to ``model.loss_and_grads``."""
        shards = self.plan(batch.ids.shape[1])
        if len(shards) == 1:
            with blas_threads(self.threads):
                return charmodel.loss_and_grads(params, config, batch.ids, batch.targets, state, batch.mask,
                                                dropout_rng, self.workspaces[0])
        dtype = next(iter(params.values())).dtype
        count = real_count(batch, dtype)
        masks = charmodel.draw_masks(config, batch.ids.shape, dropout_rng, dtype)

        def run(k, rows):
            return charmodel.loss_and_grads(
                params, config, batch.ids[:, rows], batch.targets[:, rows], shard_state(state, rows),
                None if batch.mask is None else batch.mask[:, rows], ws=self.workspaces[k], count=count,
                masks=None if masks is None else masks.rows(rows))

        results = self._map(run, shards)
        loss, grads = 0.0, results[0][1]                         # shard 0's grads are fresh arrays: add into them
        for shard_loss, _, _ in results:
            loss += shard_loss
        for _, shard_grads, _ in results[1:]:
            for name, grad in shard_grads.items():
                grads[name] += grad
        return loss, grads, stack_states([final for _, _, final in results])

    def evaluate(self, params: dict, config, batch, state: list):
        """-> (loss, final state) without dropout or gradients, equal to ``model.evaluate_loss``."""
        shards = self.plan(batch.ids.shape[1])
        if len(shards) == 1:
            with blas_threads(self.threads):
                return charmodel.evaluate_loss(params, config, batch.ids, batch.targets, state, batch.mask)
        count = real_count(batch, next(iter(params.values())).dtype)

        def run(k, rows):
            return charmodel.evaluate_loss(params, config, batch.ids[:, rows], batch.targets[:, rows],
                                           shard_state(state, rows),
                                           None if batch.mask is None else batch.mask[:, rows], count)

        results = self._map(run, shards)
        return sum(loss for loss, _ in results), stack_states([final for _, final in results])

    def describe(self, batch_size: int) -> str:
        """How a batch of this size runs, for reports: e.g. "2 shards x 1 BLAS thread"."""
        n = len(self.plan(batch_size))
        return f"{n} shards x 1 BLAS thread" if n > 1 else f"unsplit, {self.threads} BLAS thread(s)"
