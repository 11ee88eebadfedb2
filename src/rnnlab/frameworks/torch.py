"""The character model in PyTorch: nn.RNN / nn.LSTM / nn.GRU on one-hot input, an nn.Linear on top.

    ids (T, B) --one-hot--> (T, B, V) --nn.{RNN,LSTM,GRU}(num_layers, dropout)--> (T, B, H) --Linear--> (T, B, V)

Time first (``batch_first=False``), like rnnlab. ``nn.*(dropout=p)`` is the same inverted dropout on every
layer's output but the last's, in training mode only.

Weight conversion, the only place the two layouts meet (:func:`to_torch`, NumPy only, in ``frameworks/__init__.py``
so that ``rnnlab export --format safetensors`` needs no torch / :func:`from_torch`):

==================  ======================  ================================================================
rnnlab              TorchCharRNN            how
==================  ======================  ================================================================
l{k}.Wx (In, G*H)   rnn.weight_ih_l{k}      transposed to (G*H, In); gate order identical (TORCH_GATES)
l{k}.Wh (H, G*H)    rnn.weight_hh_l{k}      transposed to (G*H, H)
l{k}.b  (G*H,)      rnn.bias_ih_l{k}        as is
l{k}.bh (3H,) GRU   rnn.bias_hh_l{k}        as is: both GRU biases exist in rnnlab too
(rnn, lstm)         rnn.bias_hh_l{k}        = 0 and frozen; back: b = bias_ih + bias_hh
Wy (H, V)           out.weight              transposed to (V, H)
by (V,)             out.bias                as is
==================  ======================  ================================================================

Why freeze ``bias_hh`` of RNN/LSTM: PyTorch adds two bias vectors where rnnlab has one. Both would receive
the same gradient, so training both moves their sum -- rnnlab's ``b`` -- twice as fast as rnnlab does (and
changes Adam's and Adagrad's normalisation). With ``bias_hh`` frozen at 0 the trainable parameters are
exactly rnnlab's, so trajectories match; converting a model trained elsewhere adds the two up.

:class:`TorchEngine` trains it with ``torch.optim`` through rnnlab's engine interface (``engines.py``), on
the device :func:`resolve_device` picks for ``--device`` (cuDNN's fused kernels on CUDA), in the precision
:class:`Precision` sets up for ``--precision`` (``torch.autocast``, a GradScaler for fp16), alone or as one
of several processes under torchrun (DistributedDataParallel; ``distributed.py``). docs/gpu.md has the
design: what lives on the device, when the host waits for it, how the batch is divided among processes.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RnnlabError, TrainingDiverged, require
from ..nn.cells import CELLS
from ..nn.model import StepMasks, draw_masks
from ..nn.optim import SGD, Adagrad, Adam, Momentum, RMSProp
from ..training import distributed
from . import (
    RNNLAB_GATES,
    TORCH_GATES,
    MappedOptimizer,
    layered,
    regularizers_on,
    reorder_gates,
    to_torch,
    unsupported,
)

TORCH_MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
NUMPY_DTYPES = {torch_dtype: numpy_dtype for numpy_dtype, torch_dtype in TORCH_DTYPES.items()}


# --------------------------------------------------------------------------------------------------------
# Weight conversion
# --------------------------------------------------------------------------------------------------------

def _from_torch_gates(array: np.ndarray, cell: str, axis: int) -> np.ndarray:
    return reorder_gates(array, TORCH_GATES[cell], RNNLAB_GATES[cell], axis=axis)


def layer_from_torch(state: dict, cell: str, prefix: str, k: int) -> dict:
    """The inverse of :func:`layer_to_torch`: ``state`` holds NumPy arrays -> {Wx, Wh, b[, bh]}."""
    p = {"Wx": _from_torch_gates(state[f"{prefix}weight_ih_l{k}"].T, cell, axis=1),  # (In, GH)
         "Wh": _from_torch_gates(state[f"{prefix}weight_hh_l{k}"].T, cell, axis=1)}  # (H, GH)
    b_ih = _from_torch_gates(state[f"{prefix}bias_ih_l{k}"], cell, axis=0)
    b_hh = _from_torch_gates(state[f"{prefix}bias_hh_l{k}"], cell, axis=0)
    if cell == "gru":
        p["b"], p["bh"] = b_ih, b_hh
    else:
        p["b"] = b_ih + b_hh                                         # the two biases add up
    return p


def numpy_state(state: dict) -> dict:
    """{name: tensor or array} -> {name: NumPy array}."""
    return {name: value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
            for name, value in state.items()}


def from_torch(state: dict, config) -> dict:
    """{TorchCharRNN (or TorchLayeredRNN) state_dict name: array or tensor} -> rnnlab params (NumPy)."""
    state = numpy_state(state)
    if layered(config):
        from .torch_layers import layered_from_torch
        return layered_from_torch(state, config)
    params = {}
    for k in range(config.num_layers):
        layer = layer_from_torch(state, config.cell, "rnn.", k)
        params.update({f"l{k}.{name}": value for name, value in layer.items()})
    params["Wy"] = state["out.weight"].T                                                           # (H, V)
    params["by"] = state["out.bias"]
    return {name: np.ascontiguousarray(value) for name, value in params.items()}


# --------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------

class TorchCharRNN(nn.Module):
    """rnnlab's CharModel as an nn.Module; ``state`` is a tuple of (L, B, H) tensors: (h,) or (h, c)."""

    def __init__(self, config, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.config = config
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        dropout = config.dropout if L > 1 else 0.0   # nn.* warns about dropout with one layer; it is a no-op
        self.rnn = TORCH_MODULES[config.cell](V, H, num_layers=L, dropout=dropout, batch_first=False, dtype=dtype)
        self.out = nn.Linear(H, V, dtype=dtype)
        if config.cell != "gru":                     # rnnlab has one bias: see the module docstring
            for k in range(L):
                getattr(self.rnn, f"bias_hh_l{k}").requires_grad_(False)

    def zero_state(self, batch_size: int) -> tuple:
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        weight = self.out.weight
        return tuple(torch.zeros(shape, dtype=weight.dtype, device=weight.device)
                     for _ in range(CELLS[self.config.cell].n_states))

    def forward(self, ids: torch.Tensor, state: tuple):
        """ids (T, B) int64 -> (logits (T, B, V), final state)."""
        x = F.one_hot(ids, self.config.vocab_size).to(self.out.weight.dtype)   # (T, B, V)
        hs, final = self.rnn(x, state if self.config.cell == "lstm" else state[0])  # (T, B, H)
        return self.out(hs), final if isinstance(final, tuple) else (final,)    # (T, B, V)

    def load_numpy(self, params: dict) -> None:
        dtype = NUMPY_DTYPES[self.out.weight.dtype]
        self.load_state_dict({name: torch.from_numpy(value.astype(dtype))
                              for name, value in to_torch(params, self.config).items()})

    def numpy_params(self) -> dict:
        return from_torch(self.state_dict(), self.config)


def summed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Sum of -log p[target] over the real characters (mask 1; None: all of them)."""
    V = logits.shape[-1]
    nll = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none")   # (T*B,)
    return nll.sum() if mask is None else (nll * mask.reshape(-1)).sum()


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean -log p[target] over the real characters (mask 1), as rnnlab.losses; 0 when there are none."""
    return summed_cross_entropy(logits, targets, mask) / mask.sum().clamp_min(1.0)


def global_norm(grads: list) -> torch.Tensor:
    """sqrt(sum of every squared gradient entry), as optim.global_norm; a device scalar (no host wait)."""
    return torch.sqrt(sum((g * g).sum() for g in grads))


def clip_gradients(parameters: list, clip_value: float | None, clip_norm: float | None) -> None:
    """rnnlab's order and formulas (optim.py): per-element clip, then global-norm scaling if the norm
    exceeds ``clip_norm``. Not ``clip_grad_norm_``: it divides by norm + 1e-6, a different trajectory.
    The scale min(1, clip_norm / norm) is applied on the device, whatever the norm, so that the host never
    waits to compare it (multiplying by exactly 1 changes nothing)."""
    grads = [p.grad for p in parameters]
    if clip_value is not None:
        for g in grads:
            g.clamp_(-clip_value, clip_value)
    if clip_norm is not None:
        scale = torch.clamp(clip_norm / global_norm(grads), max=1.0)
        for g in grads:
            g.mul_(scale)


# --------------------------------------------------------------------------------------------------------
# Optimizers: rnnlab dataclass -> torch.optim, with the same trajectory
# --------------------------------------------------------------------------------------------------------

def _sgd(opt: SGD, parameters) -> MappedOptimizer:
    return MappedOptimizer(torch.optim.SGD(parameters, lr=opt.lr), {})


def _momentum(opt: Momentum, parameters) -> MappedOptimizer:
    # torch: buf = mu buf + g (buf = g at step 1), p -= lr buf  -- rnnlab's form "torch".
    # form "ema" v = mu v + (1 - mu) g is (1 - mu) * buf, so p -= lr v is torch with lr (1 - mu).
    scale = 1.0 - opt.mu if opt.form == "ema" else 1.0
    return MappedOptimizer(torch.optim.SGD(parameters, lr=opt.lr * scale, momentum=opt.mu),
                           {"velocity": ("momentum_buffer", scale)}, lr_scale=scale)


def _rmsprop(opt: RMSProp, parameters) -> MappedOptimizer:
    if opt.eps_inside_sqrt:
        raise unsupported("torch.optim.RMSprop", "RMSProp(eps_inside_sqrt=True)",
                          "it adds eps outside the square root", "eps_inside_sqrt", False)
    return MappedOptimizer(torch.optim.RMSprop(parameters, lr=opt.lr, alpha=opt.rho, eps=opt.eps),
                           {"square_avg": ("square_avg", 1.0)})


def _adam(opt: Adam, parameters) -> MappedOptimizer:
    if opt.eps_hat:
        raise unsupported("torch.optim.Adam", "Adam(eps_hat=True)", "it adds eps to sqrt(v_hat)", "eps_hat", False)
    return MappedOptimizer(torch.optim.Adam(parameters, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps),
                           {"m": ("exp_avg", 1.0), "v": ("exp_avg_sq", 1.0)})


def _adagrad(opt: Adagrad, parameters) -> MappedOptimizer:
    if getattr(opt, "eps_inside_sqrt", False):
        raise unsupported("torch.optim.Adagrad", "Adagrad(eps_inside_sqrt=True)",
                          "it adds eps outside the square root", "eps_inside_sqrt", False)
    return MappedOptimizer(torch.optim.Adagrad(parameters, lr=opt.lr, eps=opt.eps,
                                               initial_accumulator_value=opt.initial_accumulator),
                           {"sum_sq": ("sum", 1.0)})


TORCH_OPTIMIZERS = {SGD: _sgd, Momentum: _momentum, RMSProp: _rmsprop, Adam: _adam, Adagrad: _adagrad}


def torch_optimizer(optimizer, parameters) -> MappedOptimizer:
    """The torch.optim optimizer that follows ``optimizer``'s trajectory (RnnlabError if none does)."""
    if type(optimizer) not in TORCH_OPTIMIZERS:
        raise RnnlabError(f"no torch.optim equivalent for {type(optimizer).__name__}: "
                          f"use one of sgd, momentum, rms, adam, adagrad")
    return TORCH_OPTIMIZERS[type(optimizer)](optimizer, list(parameters))


# --------------------------------------------------------------------------------------------------------
# Devices and precision
# --------------------------------------------------------------------------------------------------------

DEVICE_LOSS_READ_EVERY = 100   # steps between two reads of a device's losses (train.Trainer.read_losses)


def resolve_device(name: str, world: distributed.World | None = None) -> torch.device:
    """``--device`` -> the torch.device to compute on, or one RnnlabError that says why not and what to do.

    auto: CUDA if this PyTorch sees a GPU, else the CPU. With several processes (torchrun) process k takes
    cuda:LOCAL_RANK, so naming an index is refused there."""
    world = world or distributed.World()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        require(torch.backends.mps.is_available(), "--device mps: this PyTorch sees no Apple GPU: use --device cpu")
        require(world.size == 1, "data-parallel training runs on CUDA (NCCL) or on the CPU (Gloo), not on MPS: "
                                 "use --device cpu, or one process")
        return torch.device("mps")
    if not torch.cuda.is_available():
        why = ("it was built for the CPU only: install a CUDA build of PyTorch" if torch.version.cuda is None
               else "it sees no GPU: check nvidia-smi and CUDA_VISIBLE_DEVICES")
        raise RnnlabError(f"--device {name}: this PyTorch cannot use CUDA, {why}; or use --device cpu")
    if world.size > 1:
        require(name == "cuda", f"--device {name}: under torchrun every process takes its own GPU "
                                "(cuda:LOCAL_RANK): give --device cuda")
    index = world.local_rank if world.size > 1 else int(name.partition(":")[2] or torch.cuda.current_device())
    count = torch.cuda.device_count()
    require(index < count, f"--device cuda:{index}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}"
                           + ("; start at most one process per GPU (--nproc_per_node)" if world.size > 1 else ""))
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def cpu_bf16_supported() -> bool:
    """Whether PyTorch's CPU kernels (oneDNN) run bf16 recurrent layers on this CPU: they need AVX-512 (BW,
    VL, DQ). The answer follows ONEDNN_MAX_CPU_ISA, so an AVX2-only machine can be emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Precision:
    """``--precision``. fp32 computes in the parameters' dtype. bf16 and fp16 run the forward pass under
    ``torch.autocast``: matrix products and the recurrence in 16 bits; the loss, the parameters, their
    gradients and the optimizer state stay in float32. fp16's narrow range also needs loss scaling: a
    GradScaler multiplies the loss before backward and divides the gradients after (before clipping),
    and skips -- then halves its scale after -- a step whose gradients overflowed."""

    def __init__(self, name: str, device: torch.device):
        require(name != "fp16" or device.type != "cpu", "--precision fp16 is for GPUs (PyTorch's CPU recurrent "
                                                        "kernels have no fp16 form): on the CPU use bf16 or fp32")
        require(name != "bf16" or device.type != "cpu" or cpu_bf16_supported(),
                "--precision bf16 on the CPU needs a CPU with AVX-512 (PyTorch's oneDNN recurrent kernels have no "
                "bf16 form without it; this CPU has AVX2 at most): use --precision fp32 here, or a GPU")
        self.device_type = device.type
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    def autocast(self):
        return contextlib.nullcontext() if self.dtype is None else torch.autocast(self.device_type, self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()


def char_model(config, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The nn.Module of rnnlab's model: :class:`TorchCharRNN` for a plain stack of RNN / LSTM / GRU (cuDNN's
    fused multi-layer kernels), ``torch_layers.TorchLayeredRNN`` for minGRU, minLSTM and the residual block,
    ``torch_regularizers.TorchRegularizedRNN`` for the plain stack under the regularisers of nn/regularizers.py.
    All take (ids, state) with the state a tuple of (L, B, H) tensors, and load_numpy / numpy_params."""
    if layered(config):
        from .torch_layers import TorchLayeredRNN
        return TorchLayeredRNN(config, dtype)
    if regularizers_on(config):
        from .torch_regularizers import TorchRegularizedRNN
        return TorchRegularizedRNN(config, dtype)
    return TorchCharRNN(config, dtype)


def device_forward(params: dict, config, device: str):
    """``forward(ids (T, B), state or None) -> (logits (T, B, V) array, state)`` running on ``device``, for
    ``sampling.sample``: the model computes there and the sampler draws on the host from rnnlab's
    Generator, so the text is the NumPy engine's up to float rounding."""
    where = resolve_device(device)
    model = char_model(config, TORCH_DTYPES[np.dtype(params["Wy"].dtype)])
    model.load_numpy(params)
    model.to(where).eval()

    @torch.no_grad()
    def forward(ids: np.ndarray, state):
        state = model.zero_state(ids.shape[1]) if state is None else state
        logits, state = model(torch.from_numpy(np.asarray(ids, dtype=np.int64)).to(where), state)
        return logits.cpu().numpy(), state

    return forward


# --------------------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------------------

class TorchEngine:
    """rnnlab's engine interface (engines.py) on :class:`TorchCharRNN` and ``torch.optim``, on the device of
    ``--device``, alone or as one of several processes (DistributedDataParallel; ``distributed.py``).

    Parameters, optimizer state, the batch and the carried state live on ``self.device``; rnnlab-layout
    arrays (checkpoints, sampling) cross to the host only when asked for. The state is a tuple of
    (L, b, H) tensors -- b: this process's columns of the batch -- detached after each window (truncated
    BPTT: the forward state is carried, its gradient cut).

    Reading the loss. On the CPU each step's loss is read at once and, as in the NumPy engine, a non-finite
    loss or gradient raises TrainingDiverged *before* the update. On a GPU the host does not wait for the
    device during a step: the loss stays a device scalar (NaN if the gradient was not finite) which the
    Trainer reads every ``loss_read_every`` steps; a divergence is then caught up to that many steps late,
    and the checkpoint module refuses to save the non-finite parameters it leaves behind.

    Dropout. On the CPU the masks come from torch's generator, seeded for each step from ``dropout_rng``
    (+ the rank) inside ``torch.random.fork_rng``: the global torch RNG is untouched and a run is
    reproducible from rnnlab's seed. cuDNN keeps its own dropout state, seeded once from the device's
    generator, which is seeded here once from ``dropout_rng``. Under the regularisers of nn/regularizers.py
    (``--dropout_input``, ``--weight_drop``, ``--zoneout``, ...) every mask, ``--dropout``'s too, is instead
    drawn by NumPy with ``model.draw_masks`` -- the NumPy engine's draws -- and the model is
    ``torch_regularizers.TorchRegularizedRNN``: the run follows the NumPy engine's.
    """

    name = "torch"

    def __init__(self, model_config, params, optimizer, train_config, dropout_rng: np.random.Generator):
        self.world = distributed.join(train_config.device)
        self.device = resolve_device(train_config.device, self.world)
        self.model_config = model_config
        self.numpy_dtype = np.dtype(next(iter(params.values())).dtype)
        self.dtype = TORCH_DTYPES[self.numpy_dtype]
        require(self.device.type != "mps" or self.dtype == torch.float32,
                "--device mps computes in float32: use --dtype float32")
        self.model = char_model(model_config, self.dtype)
        self.model.load_numpy(params)
        self.model.to(self.device)
        for module in self.model.modules():
            if isinstance(module, nn.RNNBase):
                module.flatten_parameters()        # one contiguous weight buffer: what cuDNN's kernels read
        self.network = distributed.data_parallel(self.model, self.world, self.device)   # trains the model
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.mapped = torch_optimizer(optimizer, self.trainable)
        self.optimizer = self.mapped.optimizer
        self.precision = Precision(train_config.precision, self.device)
        self.clip_value, self.clip_norm = train_config.clip_value, train_config.clip_norm
        self.dropout_rng = dropout_rng
        self.loss_read_every = 1 if self.device.type == "cpu" else DEVICE_LOSS_READ_EVERY
        self.steps = 0
        self.regularizers = regularizers_on(model_config)
        require(not self.regularizers or not layered(model_config),
                f"--engine torch applies {', '.join('--' + name for name in self.regularizers)} to the plain stack "
                "of rnn, lstm and gru only: for the min cells and --block residual use --engine numpy")
        if self.device.type != "cpu" and self._has_dropout():
            getattr(torch, self.device.type).manual_seed(self._dropout_seed())

    # ---- training ----------------------------------------------------------------------------------------
    def zero_state(self, batch_size: int) -> tuple:
        """Zeros for this process's columns of a batch ``batch_size`` wide."""
        columns = self.world.columns(batch_size)
        return self.model.zero_state(columns.stop - columns.start)

    def _share(self, batch, state):
        """This process's columns of ``batch`` on the device -> (ids, targets, mask or None, state, columns).

        A process whose share is empty (a batch narrower than the number of processes) computes a fully
        masked copy of column 0 from a zero state instead: it adds exact zeros to the loss and gradients
        and still joins DistributedDataParallel's all-reduce."""
        columns, mask = self.world.columns(batch.ids.shape[1]), batch.mask
        padded = columns.start == columns.stop
        if padded:
            columns, mask, state = slice(0, 1), np.zeros((batch.ids.shape[0], 1)), self.model.zero_state(1)
        elif mask is not None:
            mask = mask[:, columns]

        def to_device(array, dtype):
            return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, dtype, non_blocking=True)

        ids = to_device(batch.ids[:, columns], torch.int64)                        # (T, b)
        targets = to_device(batch.targets[:, columns], torch.int64)                # (T, b)
        return ids, targets, None if mask is None else to_device(mask, self.dtype), state, columns, padded

    def _forward(self, network, batch, state, masks: StepMasks | None = None, training: bool = False):
        """-> (this process's share of the batch's mean loss: its summed loss over the *whole* batch's
        character count, the share of the AR / TAR penalty (training only; 0 without), the final state of its
        columns). ``masks``: the whole batch's draws (nn.model.draw_masks), of which this process takes its
        columns."""
        ids, targets, mask, state, columns, padded = self._share(batch, state)
        kwargs = {} if masks is None else {"masks": self._masks_on_device(masks, columns)}
        with self.precision.autocast():
            logits, final = network(ids, state, **kwargs)                          # (T, b, V)
        share = summed_cross_entropy(logits.to(self.dtype), targets, mask) / max(batch.n_tokens, 1)
        penalty = 0.0
        if training and self.regularizers and (self.model_config.ar or self.model_config.tar):
            from .torch_regularizers import activation_penalty
            penalty = activation_penalty(self.model.top_recurrent.to(self.dtype), mask, max(batch.n_tokens, 1),
                                         self.model_config.ar, self.model_config.tar)
        return share, penalty, tuple(s.detach()[:, :0] if padded else s.detach() for s in final)

    def _masks_on_device(self, masks: StepMasks, columns: slice) -> StepMasks:
        """The whole batch's masks -> this process's columns as tensors on the device (W_h's masks whole)."""
        def move(array):
            if not isinstance(array, np.ndarray):
                return array                                     # None, or a zoneout rate of 0
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            return tensor.to(self.device, None if array.dtype == np.bool_ else self.dtype, non_blocking=True)

        cut = masks.rows(columns)
        return StepMasks(None if cut.dropout is None else [move(m) for m in cut.dropout], move(cut.inputs),
                         move(cut.output), None if cut.weights is None else [move(m) for m in cut.weights],
                         None if cut.zoneout is None else [tuple(move(z) for z in layer) for layer in cut.zoneout])

    def _has_dropout(self) -> bool:
        return self.model_config.dropout > 0 and self.model_config.num_layers > 1 and not self.regularizers

    def _dropout_seed(self) -> int:
        return (int(self.dropout_rng.integers(2 ** 63)) + self.world.rank) % 2 ** 63

    def _dropout_randomness(self):
        if not self._has_dropout() or self.device.type != "cpu":
            return contextlib.nullcontext()
        return _seeded_torch_rng(self._dropout_seed())

    def train_step(self, batch, state):
        self.network.train()
        masks = None
        if self.regularizers:                   # the NumPy engine's draws, in its order
            masks = draw_masks(self.model_config, batch.ids.shape, self.dropout_rng, self.numpy_dtype)
        with self._dropout_randomness():
            share, penalty, final = self._forward(self.network, batch, state, masks, training=True)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(share + penalty)   # with DDP: the sum of every share's gradient (distributed.py)
        self.precision.unscale(self.optimizer)
        loss = self._checked(self.world.sum(share.detach().clone()), global_norm([p.grad for p in self.trainable]))
        clip_gradients(self.trainable, self.clip_value, self.clip_norm)
        self.precision.step(self.optimizer)
        self.steps += 1
        return loss, final

    def _checked(self, loss: torch.Tensor, grad_norm: torch.Tensor):
        """The batch loss for the Trainer: on the CPU a float, checked now with the gradient norm; on a device
        a scalar left there, NaN if the gradient was not finite (see the class docstring). Under fp16 an
        overflowing gradient is the GradScaler's business (it skips the step), not a divergence."""
        finite_gradient = torch.isfinite(grad_norm) | (self.precision.scaler is not None)
        if self.loss_read_every > 1:
            return torch.where(finite_gradient, loss, torch.nan)
        if not (math.isfinite(loss.item()) and finite_gradient.item()):
            raise TrainingDiverged(f"the loss ({loss.item():.4g}) or its gradient is not finite; "
                                   "parameters left as they were")
        return loss.item()

    @torch.no_grad()
    def evaluate(self, batch, state):
        self.model.eval()
        share, _, final = self._forward(self.model, batch, state)
        loss = self.world.sum(share)
        return (loss.item() if self.loss_read_every == 1 else loss), final

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr * self.mapped.lr_scale

    # ---- rnnlab's layout in and out ----------------------------------------------------------------------
    def numpy_params(self) -> dict:
        return self.model.numpy_params()

    def use_params(self, params: dict) -> dict:
        """Load rnnlab-layout ``params`` into the model (the optimizer keeps its state); -> the previous ones."""
        previous = self.numpy_params()
        self.model.load_numpy(params)
        return previous

    def optimizer_state(self) -> dict:
        """torch.optim's per-parameter state in rnnlab's layout (optim.py's slot names, params' keys)."""
        state = {"step": self.steps}
        for slot, (key, factor) in self.mapped.slots.items():
            arrays = {}
            for name, p in self.model.named_parameters():
                value = self.optimizer.state.get(p, {}).get(key)   # none yet, or a frozen bias: zeros
                arrays[name] = np.zeros(p.shape) if value is None else factor * value.detach().cpu().numpy()
            state[slot] = {name: value.astype(self.numpy_dtype)
                           for name, value in from_torch(arrays, self.model_config).items()}
        return state

    def load_state(self, params: dict, optimizer_state: dict) -> None:
        """Continue from rnnlab-layout parameters and optimizer state (a checkpoint of any engine)."""
        self.model.load_numpy(params)
        self.steps = int(optimizer_state["step"])
        per_slot = {key: (to_torch(optimizer_state[slot], self.model_config), factor)
                    for slot, (key, factor) in self.mapped.slots.items()}
        for name, p in self.model.named_parameters():
            if p.requires_grad and per_slot:
                entry = {key: torch.from_numpy(arrays[name] / factor).to(self.device, self.dtype)
                         for key, (arrays, factor) in per_slot.items()}
                if not isinstance(self.optimizer, torch.optim.SGD):  # Adam, RMSprop, Adagrad count steps per tensor
                    entry["step"] = torch.tensor(float(self.steps))
                self.optimizer.state[p] = entry

    def state_to_numpy(self, state) -> list:
        """(L, b, H) tensors -> per layer a tuple of (B, H) arrays of the *whole* batch: with several
        processes gathered from all of them (a collective: every process calls it)."""
        whole = [self.world.gather_columns(part).cpu() for part in state]            # each (L, B, H)
        whole = [part.float().numpy() if part.dtype in (torch.bfloat16, torch.float16) else part.numpy()
                 for part in whole]                                 # NumPy has no bfloat16: widen first
        return [tuple(part[k].astype(self.numpy_dtype) for part in whole)
                for k in range(self.model_config.num_layers)]

    def state_from_numpy(self, state: list) -> tuple:
        """Per layer a tuple of (B, H) arrays -> this process's columns, (L, b, H) tensors on the device."""
        columns = self.world.columns(state[0][0].shape[0])
        return tuple(torch.from_numpy(np.stack([np.asarray(layer[i])[columns] for layer in state]))
                     .to(self.device, self.dtype) for i in range(len(state[0])))


@contextlib.contextmanager
def _seeded_torch_rng(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
