"""The character model in PyTorch: nn.RNN / nn.LSTM / nn.GRU on one-hot input, an nn.Linear on top.

    ids (T, B) --one-hot--> (T, B, V) --nn.{RNN,LSTM,GRU}(num_layers, dropout)--> (T, B, H) --Linear--> (T, B, V)

Time first (``batch_first=False``), like rnnlab. ``nn.*(dropout=p)`` is the same inverted dropout on every
layer's output but the last's, in training mode only.

Weight conversion, the only place the two layouts meet (:func:`to_torch` / :func:`from_torch`):

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

:class:`TorchEngine` trains it with ``torch.optim`` through rnnlab's engine interface (``engines.py``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cells import CELLS
from ..errors import RnnlabError, TrainingDiverged
from ..optim import SGD, Adagrad, Adam, Momentum, RMSProp
from . import RNNLAB_GATES, TORCH_GATES, MappedOptimizer, reorder_gates, unsupported

TORCH_MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
NUMPY_DTYPES = {torch_dtype: numpy_dtype for numpy_dtype, torch_dtype in TORCH_DTYPES.items()}


# --------------------------------------------------------------------------------------------------------
# Weight conversion
# --------------------------------------------------------------------------------------------------------

def _to_torch_gates(array: np.ndarray, cell: str, axis: int) -> np.ndarray:
    return reorder_gates(array, RNNLAB_GATES[cell], TORCH_GATES[cell], axis=axis)


def _from_torch_gates(array: np.ndarray, cell: str, axis: int) -> np.ndarray:
    return reorder_gates(array, TORCH_GATES[cell], RNNLAB_GATES[cell], axis=axis)


def to_torch(params: dict, config) -> dict:
    """rnnlab params -> {TorchCharRNN state_dict name: array} (NumPy, same dtype)."""
    state = {}
    for k in range(config.num_layers):
        b = params[f"l{k}.b"]
        state[f"rnn.weight_ih_l{k}"] = _to_torch_gates(params[f"l{k}.Wx"], config.cell, axis=1).T  # (GH, In)
        state[f"rnn.weight_hh_l{k}"] = _to_torch_gates(params[f"l{k}.Wh"], config.cell, axis=1).T  # (GH, H)
        state[f"rnn.bias_ih_l{k}"] = _to_torch_gates(b, config.cell, axis=0)                       # (GH,)
        bh = params.get(f"l{k}.bh", np.zeros_like(b))                # RNN/LSTM: no recurrent bias
        state[f"rnn.bias_hh_l{k}"] = _to_torch_gates(bh, config.cell, axis=0)                      # (GH,)
    state["out.weight"] = params["Wy"].T                                                           # (V, H)
    state["out.bias"] = params["by"]                                                               # (V,)
    return {name: np.ascontiguousarray(value) for name, value in state.items()}


def from_torch(state: dict, config) -> dict:
    """{TorchCharRNN state_dict name: array or tensor} -> rnnlab params (NumPy)."""
    state = {name: value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
             for name, value in state.items()}
    params = {}
    for k in range(config.num_layers):
        params[f"l{k}.Wx"] = _from_torch_gates(state[f"rnn.weight_ih_l{k}"].T, config.cell, axis=1)  # (In, GH)
        params[f"l{k}.Wh"] = _from_torch_gates(state[f"rnn.weight_hh_l{k}"].T, config.cell, axis=1)  # (H, GH)
        b_ih = _from_torch_gates(state[f"rnn.bias_ih_l{k}"], config.cell, axis=0)
        b_hh = _from_torch_gates(state[f"rnn.bias_hh_l{k}"], config.cell, axis=0)
        if config.cell == "gru":
            params[f"l{k}.b"], params[f"l{k}.bh"] = b_ih, b_hh
        else:
            params[f"l{k}.b"] = b_ih + b_hh                           # the two biases add up
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
        return tuple(torch.zeros(shape, dtype=self.out.weight.dtype) for _ in range(CELLS[self.config.cell].n_states))

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


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean -log p[target] over the real characters (mask 1), as rnnlab.losses; 0 when there are none."""
    V = logits.shape[-1]
    nll = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none")   # (T*B,)
    m = mask.reshape(-1)
    return (nll * m).sum() / m.sum().clamp_min(1.0)


def clip_gradients(parameters: list, clip_value: float | None, clip_norm: float | None) -> None:
    """rnnlab's order and formulas (optim.py): per-element clip, then global-norm scaling if the norm
    exceeds ``clip_norm``. Not ``clip_grad_norm_``: it divides by norm + 1e-6, a different trajectory."""
    grads = [p.grad for p in parameters]
    if clip_value is not None:
        for g in grads:
            g.clamp_(-clip_value, clip_value)
    if clip_norm is not None:
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        if norm > clip_norm:
            for g in grads:
                g.mul_(clip_norm / norm)


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
# The engine
# --------------------------------------------------------------------------------------------------------

class TorchEngine:
    """rnnlab's engine interface (engines.py) on :class:`TorchCharRNN` and ``torch.optim``.

    The state is a tuple of (L, B, H) tensors, detached after each window (truncated BPTT: the forward state
    is carried, its gradient cut). Dropout masks come from torch's generator, seeded for each training step
    from ``dropout_rng`` inside ``torch.random.fork_rng`` so that the global torch RNG is left untouched
    and a run is reproducible from rnnlab's seed. As in the NumPy engine, a non-finite loss or gradient
    raises TrainingDiverged before the update, leaving the parameters as they were.
    """

    name = "torch"

    def __init__(self, model_config, params, optimizer, train_config, dropout_rng: np.random.Generator):
        self.model_config = model_config
        self.numpy_dtype = np.dtype(next(iter(params.values())).dtype)
        self.dtype = TORCH_DTYPES[self.numpy_dtype]
        self.model = TorchCharRNN(model_config, self.dtype)
        self.model.load_numpy(params)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.mapped = torch_optimizer(optimizer, self.trainable)
        self.optimizer = self.mapped.optimizer
        self.clip_value, self.clip_norm = train_config.clip_value, train_config.clip_norm
        self.dropout_rng = dropout_rng
        self.steps = 0

    # ---- training ----------------------------------------------------------------------------------------
    def zero_state(self, batch_size: int) -> tuple:
        return self.model.zero_state(batch_size)

    def _tensors(self, batch):
        mask = np.ones(batch.ids.shape) if batch.mask is None else batch.mask
        return (torch.from_numpy(np.asarray(batch.ids, dtype=np.int64)),               # (T, B)
                torch.from_numpy(np.asarray(batch.targets, dtype=np.int64)),           # (T, B)
                torch.from_numpy(mask).to(self.dtype))                                # (T, B)

    def _dropout_randomness(self):
        if self.model_config.dropout == 0 or self.model_config.num_layers == 1:
            return contextlib.nullcontext()
        return _seeded_torch_rng(int(self.dropout_rng.integers(2 ** 63)))

    def train_step(self, batch, state):
        ids, targets, mask = self._tensors(batch)
        self.model.train()
        with self._dropout_randomness():
            logits, final = self.model(ids, state)                                   # (T, B, V)
        loss = masked_cross_entropy(logits, targets, mask)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.sqrt(sum((p.grad * p.grad).sum() for p in self.trainable))
        if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
            raise TrainingDiverged(f"the loss ({loss.item():.4g}) or its gradient is not finite; "
                                   "parameters left as they were")
        clip_gradients(self.trainable, self.clip_value, self.clip_norm)
        self.optimizer.step()
        self.steps += 1
        return loss.item(), tuple(s.detach() for s in final)

    @torch.no_grad()
    def evaluate(self, batch, state):
        ids, targets, mask = self._tensors(batch)
        self.model.eval()
        logits, final = self.model(ids, state)
        return float(masked_cross_entropy(logits, targets, mask)), final

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr * self.mapped.lr_scale

    # ---- rnnlab's layout in and out ----------------------------------------------------------------------
    def numpy_params(self) -> dict:
        return self.model.numpy_params()

    def optimizer_state(self) -> dict:
        """torch.optim's per-parameter state in rnnlab's layout (optim.py's slot names, params' keys)."""
        state = {"step": self.steps}
        for slot, (key, factor) in self.mapped.slots.items():
            arrays = {}
            for name, p in self.model.named_parameters():
                value = self.optimizer.state.get(p, {}).get(key)   # none yet, or a frozen bias: zeros
                arrays[name] = np.zeros(p.shape) if value is None else factor * value.detach().numpy()
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
                entry = {key: torch.from_numpy(arrays[name] / factor).to(self.dtype)
                         for key, (arrays, factor) in per_slot.items()}
                if not isinstance(self.optimizer, torch.optim.SGD):  # Adam, RMSprop, Adagrad count steps per tensor
                    entry["step"] = torch.tensor(float(self.steps))
                self.optimizer.state[p] = entry

    def state_to_numpy(self, state) -> list:
        """(L, B, H) tensors -> per layer a tuple of (B, H) arrays: (h,) or (h, c)."""
        return [tuple(part[k].numpy().astype(self.numpy_dtype) for part in state)
                for k in range(self.model_config.num_layers)]

    def state_from_numpy(self, state: list) -> tuple:
        n_parts = len(state[0])
        return tuple(torch.from_numpy(np.stack([np.asarray(layer[i]) for layer in state])).to(self.dtype)
                     for i in range(n_parts))


@contextlib.contextmanager
def _seeded_torch_rng(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
