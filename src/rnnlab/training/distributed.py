"""Data-parallel training across processes: torchrun's environment, the process group, who writes, one error line.

    torchrun --nproc_per_node=N -m rnnlab train ... --engine torch          # N processes on one machine
    torchrun --nnodes=M --nproc_per_node=N --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT -m rnnlab train ...

starts N (x M) copies of ``rnnlab train``. torchrun tells each one its place in the environment:

    RANK         0 .. WORLD_SIZE-1, this process' number among all of them (rank 0 writes, see below)
    WORLD_SIZE   how many processes train together
    LOCAL_RANK   its number on this machine: with CUDA it computes on cuda:LOCAL_RANK
    MASTER_ADDR, MASTER_PORT   where the processes meet (torchrun's store)

How the work is divided (the torch engine does it, ``frameworks/torch.py``): every process reads the same
data in the same order and so holds the same *global* batch of ``--batch_size`` columns; process r computes
the contiguous block :meth:`World.columns` of it. Its loss is its share of the global batch mean -- the
summed loss of its columns divided by the token count of the *whole* batch -- and DistributedDataParallel
sums (:func:`sum_gradients_hook`, not averages) the gradients, so every process holds the gradient of the
global batch mean, whatever the padding: N processes follow one process's trajectory up to the order of
floating-point additions. Validation is divided the same way and summed.

Who writes: only rank 0 (:attr:`World.writes`) prints, samples, writes the metrics file and owns the
checkpoint folder (its lock, probe and saves); the others compute and stay silent. Checkpoints hold the
whole batch's hidden state (gathered from every process), so they are the same files one process writes.

One error, one line (:func:`joined`, :func:`may_print_error`): before the processes have met, every one meets
the same problem (a bad flag), so rank 0 alone reports it -- except for a problem only one process can have
(:class:`RankError`: its environment, or reaching the others), which that process reports itself; afterwards
the first process to fail claims the error on the store and prints its line, and every process that fails
after it -- usually because a peer vanished from a collective -- exits without a word. torchrun then ends
the remaining processes.

The environment is validated once (:func:`environment_world`): numbers, ranges, the rendezvous address. The
processes then meet under a deadline (``--dist_timeout``, default :data:`DEFAULT_TIMEOUT_S`): each connects to
the store (probing its port in short attempts, so that Ctrl-C is honoured while waiting) and registers its rank;
when the time is up, the error names the ranks that never came.

Nothing here imports torch until a run has more than one process: one process needs NumPy alone.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from dataclasses import dataclass
from datetime import timedelta

from ..errors import RnnlabError

ERROR_KEY = "rnnlab/first_error"        # on torchrun's store: the rank whose error line is printed
RANK_0_FIRST_S = 2.0                    # how long the other ranks let rank 0 claim an error first
DEFAULT_TIMEOUT_S = 60.0                # --dist_timeout: how long the processes wait for each other to meet
MAX_WORLD_SIZE = 1 << 20
CONNECT_ATTEMPT_S = 1.0                 # one attempt to reach the store: Ctrl-C is seen between attempts


class RankError(RnnlabError):
    """A problem only this process meets (its environment variables, reaching the others): it prints its own
    line, whatever its rank."""


@dataclass(frozen=True)
class World:
    """This process' place among those training together (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: str = "cpu"     # where collectives' tensors live: cuda:LOCAL_RANK with NCCL, cpu with Gloo

    @property
    def writes(self) -> bool:
        """Rank 0 prints, samples, writes the metrics file and the checkpoints."""
        return self.rank == 0

    def columns(self, n: int) -> slice:
        """This process' contiguous block of a batch's ``n`` columns: [n r / N, n (r + 1) / N), rounded down.
        Blocks differ in size by at most one; with n < N some are empty (see TorchEngine)."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    # ---- collectives (every process must call them, in the same order) ------------------------------
    def sum(self, tensor):
        """The sum of ``tensor`` over all processes (in place; the tensor itself with one process)."""
        if self.size > 1:
            import torch.distributed as dist
            dist.all_reduce(tensor)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any (e.g. a stop request that reached only some)."""
        if self.size == 1:
            return flag
        import torch
        return bool(self.sum(torch.tensor([int(flag)], device=self.device)).item())

    def gather_columns(self, part):
        """The (L, b_r, H) blocks of every process -> the (L, B, H) whole, on every process. Each process puts
        its block into zeros at its offset and the sum assembles them (adding zeros is exact)."""
        if self.size == 1:
            return part
        import torch
        widths = torch.zeros(self.size, dtype=torch.int64, device=self.device)
        widths[self.rank] = part.shape[1]
        widths = self.sum(widths).tolist()
        start = sum(widths[:self.rank])
        whole = torch.zeros((part.shape[0], sum(widths), part.shape[2]), dtype=part.dtype, device=part.device)
        whole[:, start:start + part.shape[1]] = part
        return self.sum(whole)


def _int_variable(name: str, default: int, low: int, high: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise RankError(f"environment variable {name}={value[:40]!r} is not a whole number: launch with torchrun, "
                        "which sets it (or unset it for one process)") from None
    if not low <= number <= high:
        raise RankError(f"environment variable {name}={number} must be between {low} and {high}: launch with "
                        "torchrun, which sets it (or unset it for one process)")
    return number


_environment: World | RankError | None = None


def environment_world(fresh: bool = False) -> World:
    """The World torchrun describes in the environment (none of its variables: one process), validated once
    (again with ``fresh``: a new command): WORLD_SIZE >= 1, 0 <= RANK < WORLD_SIZE, 0 <= LOCAL_RANK <
    LOCAL_WORLD_SIZE (or WORLD_SIZE), and with several processes a MASTER_ADDR and a MASTER_PORT to meet at.
    A bad value is a RankError."""
    global _environment
    if _environment is None or fresh:
        try:
            size = _int_variable("WORLD_SIZE", 1, 1, MAX_WORLD_SIZE)
            rank = _int_variable("RANK", 0, 0, size - 1)
            local_size = _int_variable("LOCAL_WORLD_SIZE", size, 1, size)
            local_rank = _int_variable("LOCAL_RANK", 0, 0, local_size - 1)
            if size > 1:
                for name in ("MASTER_ADDR", "MASTER_PORT"):
                    if not os.environ.get(name, "").strip():
                        raise RankError(f"WORLD_SIZE={size} but {name} is not set: launch with torchrun "
                                        "--nproc_per_node=N -m rnnlab train ...")
                _int_variable("MASTER_PORT", 0, 1, 65535)
            _environment = World(rank, size, local_rank)
        except RankError as err:
            _environment = err
    if isinstance(_environment, RankError):
        raise _environment
    return _environment


_joined: World | None = None     # the World after join(): one per process
_error_claimed: bool | None = None


def current() -> World:
    """The World this process joined, or the one the environment describes if it has not joined yet."""
    return _joined or environment_world()


def backend_for(device: str) -> tuple[str, str]:
    """(process-group backend, device of the collectives' tensors) for ``--device``: NCCL on CUDA, Gloo
    elsewhere. Decided without failing -- a device that does not exist is reported once the processes have
    met (by frameworks.torch.resolve_device), so that it is reported once."""
    import torch
    if device != "cpu" and not device.startswith("mps") and torch.cuda.is_available():
        return "nccl", f"cuda:{environment_world().local_rank}"
    return "gloo", "cpu"


def join(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
    """Meet the other processes of this run (once per process; later calls return the same World), waiting
    at most ``timeout_s`` seconds for them (:func:`meet`). With one process nothing happens and torch is not
    imported."""
    global _joined
    if _joined is not None:
        return _joined
    world = environment_world()
    if world.size > 1:
        try:
            import torch.distributed as dist
        except ImportError:
            raise RnnlabError(f"WORLD_SIZE={world.size}: data-parallel training needs torch, which is not "
                              "installed: pip install 'rnnlab[torch]'") from None
        backend, collective_device = backend_for(device)
        if not dist.is_initialized():
            store = meet(world, timeout_s)
            dist.init_process_group(backend, store=store, rank=world.rank, world_size=world.size,
                                    timeout=timedelta(seconds=max(timeout_s, 1800)))
        world = World(world.rank, world.size, world.local_rank, collective_device)
    _joined = world
    return world


def meet(world: World, timeout_s: float):
    """The store every process of the run shares, once all of them have registered on it: rank 0 serves it
    (or torchrun's agent does), the others connect in short attempts until the deadline -- a Python loop, so
    Ctrl-C stops the wait. -> a store for the process group. A process that is missing at the deadline is
    named in a RankError (by the lowest rank that came, or by a rank that could not reach the store)."""
    import torch.distributed as dist
    host, port = os.environ["MASTER_ADDR"].strip(), int(os.environ["MASTER_PORT"])
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"      # torchrun's own store serves all
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    deadline = time.monotonic() + timeout_s
    serve = world.rank == 0 and not agent
    while not serve and not reachable(host, port, deadline):   # probed in Python: no C++ connect timeouts logged
        if time.monotonic() >= deadline:
            raise RankError(f"process {world.rank} of {world.size} could not reach the rendezvous at {host}:{port} "
                            f"within {timeout_s:g} s: start rank 0 (torchrun starts every process), check "
                            "MASTER_ADDR and MASTER_PORT, or raise --dist_timeout")
        time.sleep(0.1)
    try:
        store = dist.TCPStore(host, port, world.size if serve else None, serve,
                              timedelta(seconds=max(deadline - time.monotonic(), 1.0)),
                              wait_for_workers=False, multi_tenant=True)
    except (RuntimeError, ValueError) as err:
        where = "serve" if serve else "join"
        raise RankError(f"process {world.rank} cannot {where} the rendezvous at {host}:{port} "
                        f"({str(err).splitlines()[0][:120]}): give another MASTER_PORT, or check MASTER_ADDR") from None
    store = dist.PrefixStore(f"rnnlab/{attempt}", store)
    store.set(f"joined/{world.rank}", "1")
    keys = [f"joined/{rank}" for rank in range(world.size)]
    while not store.check(keys):
        if time.monotonic() > deadline:
            came = [rank for rank in range(world.size) if store.check([f"joined/{rank}"])]
            missing = sorted(set(range(world.size)) - set(came))
            shown = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
            error = RankError(f"{len(missing)} of {world.size} processes never joined within {timeout_s:g} s (rank "
                              f"{shown}): start every process (torchrun --nproc_per_node=N starts them all), or "
                              "raise --dist_timeout")
            error.silent = world.rank != min(came)                # the lowest rank that came says it
            raise error
        time.sleep(0.05)
    return store


def reachable(host: str, port: int, deadline: float) -> bool:
    """Whether something accepts connections at host:port now (one attempt of at most CONNECT_ATTEMPT_S)."""
    import socket
    try:
        with socket.create_connection((host, port), timeout=max(min(CONNECT_ATTEMPT_S, deadline - time.monotonic()),
                                                                0.05)):
            return True
    except OSError:
        return False


def leave() -> None:
    """Close the process group (the end of a run); the next join meets the processes again."""
    global _joined
    if _joined is not None and _joined.size > 1:
        import torch.distributed as dist
        if dist.is_initialized():
            gc.collect()            # free the run's DDP model first: its reducer must not outlive the group
            dist.destroy_process_group()
    _joined = None


@contextlib.contextmanager
def joined(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S):
    """``with joined(device, timeout_s) as world:`` -- meet the other processes first (so that any later error
    reaches them), claim the error line if this process fails first, and close the group at the end."""
    global _error_claimed
    try:
        yield join(device, timeout_s)
    except RankError as err:                                     # this process' own problem: it says so
        _error_claimed = not getattr(err, "silent", False)
        raise
    except BaseException:
        _error_claimed = claim_error()
        raise
    else:
        finish_together()
    finally:
        leave()


def finish_together() -> None:
    """A run that ended well waits for the others before closing the group: a process that tears down Gloo
    while a peer still sends to it aborts ("terminate called without an active exception")."""
    if _joined is not None and _joined.size > 1:
        import torch.distributed as dist
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.barrier()


def claim_error() -> bool:
    """True if this process is the first of the run to fail (it prints the error line): the first to set
    :data:`ERROR_KEY` on torchrun's store wins. Rank 0 tries at once, the others after giving it
    :data:`RANK_0_FIRST_S` to claim, so that an error every process meets is rank 0's line (which can name
    the checkpoint it saved). Without a store to ask, every process reports (better two lines than none)."""
    world = current()
    if world.size == 1:
        return True
    try:
        import torch.distributed as dist
        if not dist.is_initialized():
            return world.writes
        store = dist.distributed_c10d._get_default_store()     # torchrun's store, where the processes met
        if not world.writes:
            with contextlib.suppress(Exception):                # nobody claimed within the time: try
                store.wait([ERROR_KEY], timedelta(seconds=RANK_0_FIRST_S))
        first = store.compare_set(ERROR_KEY, "", str(world.rank))  # set only if nobody has set it
        return first.decode() == str(world.rank)
    except Exception:                                          # the store went away with its host
        return True


def may_print_error(err: BaseException | None = None) -> bool:
    """Whether this process prints its error line (see the module docstring)."""
    if _error_claimed is not None:
        return _error_claimed
    if isinstance(err, RankError):
        return not getattr(err, "silent", False)
    try:
        return current().writes
    except RankError:                                            # a bad environment: every process says it
        return True


def sum_gradients_hook(state, bucket):
    """DistributedDataParallel communication hook: all-reduce the gradient bucket as a *sum*. Each process'
    loss is already its share of the global mean (divided by the whole batch's token count), so the sum is
    the gradient of the global mean; PyTorch's default hook would divide by the number of processes."""
    import torch.distributed as dist
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda fut: fut.value()[0])


def data_parallel(model, world: World, device):
    """``model`` wrapped in DistributedDataParallel with the summing hook, or ``model`` itself alone."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [device.index] if device.type == "cuda" else None
    wrapped = DistributedDataParallel(model, device_ids=ids)
    wrapped.register_comm_hook(None, sum_gradients_hook)
    return wrapped


def lost_peer(err: BaseException) -> str | None:
    """The error line for a collective that failed because another process of the run vanished (it failed
    first, or was killed); None for any other error."""
    world = current()
    if world.size == 1:
        return None
    import torch.distributed as dist
    gone = isinstance(err, dist.DistError) or (isinstance(err, RuntimeError) and any(
        sign in str(err) for sign in ("Connection closed by peer", "Connection reset by peer", "NCCL")))
    if not gone:
        return None
    return (f"process {world.rank} of {world.size} lost the others ({type(err).__name__}): another process "
            "failed or was stopped first; its own line, or torchrun's summary, says why")
