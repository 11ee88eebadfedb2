"""The whole seq2seq model against the same computation written independently with torch autograd.

The torch side shares no code with rnnlab: it writes the GRU ("reset after") and LSTM equations of cells.py
out, and it runs every example ON ITS OWN, at its own length, with no padding and no mask -- the backward
direction simply reads the reversed characters, the decoder starts from the last real position, attention
sees only real positions. rnnlab runs the same examples as one padded batch. Equal logits, losses and
gradients therefore also prove that rnnlab's padding, masks and per-length reversal change nothing.

Tolerances: both sides compute in float64 with the same formulas in a different order (torch per example,
rnnlab batched and with its weight gradients summed in one product after the loop): observed differences are
~1e-15 relative. rtol 1e-9 / atol 1e-12 leaves a margin of 1e5 and catches any real bug (1e-3 or more).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crosscheck import one_torch_thread  # noqa: E402, F401 (an autouse fixture: used by being imported)
from rnnlab.data.pairs import PairTokenizers, collate_pairs  # noqa: E402
from rnnlab.nn import seq2seq as s2s  # noqa: E402

PAIRS = [("ab c", "12"), ("cba", "2"), ("a", "121"), ("bbca", "1")]
TOKENIZERS = PairTokenizers.fit(PAIRS)
TOL = dict(rtol=1e-9, atol=1e-12)


def gru(zx, state, p):
    (h,) = state
    H = h.shape[1]
    hh = h @ p["Wh"] + p["bh"]
    r = torch.sigmoid(zx[:, :H] + hh[:, :H])
    z = torch.sigmoid(zx[:, H:2 * H] + hh[:, H:2 * H])
    n = torch.tanh(zx[:, 2 * H:] + r * hh[:, 2 * H:])
    return ((1 - z) * n + z * h,)


def lstm(zx, state, p):
    h, c = state
    H = h.shape[1]
    a = zx + h @ p["Wh"]
    i, f, g, o = (torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H]), torch.tanh(a[:, 2 * H:3 * H]),
                  torch.sigmoid(a[:, 3 * H:]))
    c = f * c + i * g
    return (o * torch.tanh(c), c)


CELL = {"gru": (gru, 1), "lstm": (lstm, 2)}


def group(p, prefix):
    return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}


def run_direction(kind, ids, p, hidden):
    step, n_states = CELL[kind]
    state = tuple(torch.zeros(1, hidden, dtype=torch.float64) for _ in range(n_states))
    outputs = []
    for i in ids:
        state = step(p["Wx"][i:i + 1] + p["b"], state, p)
        outputs.append(state[0])
    return torch.cat(outputs)                                    # (S, He)


def scores(kind, s, h, p):
    """s (1, Hd), h (S, 2He) -> e (1, S)."""
    if kind == "additive":
        return (torch.tanh(s @ p["Wq"] + p["b"] + h @ p["Wk"]) @ p["v"])[None, :]
    if kind == "general":
        return s @ p["W"] @ h.T
    return s @ h.T / (s.shape[1] ** 0.5 if kind == "scaled_dot" else 1.0)


def torch_logits(p, config, source_ids, dec_in):
    """One example, unpadded -> logits (T, V)."""
    He = config.encoder_hidden
    hf = run_direction(config.encoder_cell, source_ids, group(p, "enc_f."), He)
    hb = run_direction(config.encoder_cell, source_ids[::-1], group(p, "enc_b."), He).flip(0)
    h = torch.cat([hf, hb], dim=1)                               # (S, 2He)
    s0 = torch.tanh(torch.cat([hf[-1:], hb[:1]], dim=1) @ p["bridge.W"] + p["bridge.b"])
    step, n_states = CELL[config.decoder_cell]
    state = (s0, *[torch.zeros_like(s0)] * (n_states - 1))
    dec = group(p, "dec.")
    context = torch.zeros(1, 2 * He, dtype=torch.float64)
    logits = []
    for y in dec_in:
        zx = dec["Wx"][y:y + 1] + dec["b"]
        if config.uses_attention:
            zx = zx + context @ dec["Wc"]
        state = step(zx, state, dec)
        out = state[0] @ p["Wy"] + p["by"]
        if config.uses_attention:
            alpha = torch.softmax(scores(config.attention, state[0], h, group(p, "att.")), dim=1)
            context = alpha @ h
            out = out + context @ p["Wyc"]
        logits.append(out)
    return torch.cat(logits)


@pytest.mark.parametrize("encoder_cell,decoder_cell", [("gru", "lstm"), ("lstm", "gru")], ids=lambda c: c)
@pytest.mark.parametrize("attention", s2s.ATTENTION_KINDS)
def test_logits_loss_and_gradients_equal_torch_per_example(attention, encoder_cell, decoder_cell):
    """The padded batch's logits at real positions, the loss, and the gradients of the loss and of
    sum(logits * dy) for a random upstream dy (zero at padding, where logits mean nothing)."""
    config = s2s.Seq2SeqConfig(TOKENIZERS.source.vocab_size, TOKENIZERS.target.vocab_size, encoder_cell, 3,
                               decoder_cell, 6, attention, 4)
    rng = np.random.default_rng(0)
    params = {n: v + 0.3 * rng.standard_normal(v.shape) for n, v in s2s.init_params(config, rng, np.float64).items()}
    examples = [TOKENIZERS.encode_pair(pair) for pair in PAIRS]
    batch = collate_pairs(examples)
    dy = rng.standard_normal((*batch.targets.shape, config.target_vocab_size)) * batch.target_mask[:, :, None]

    logits, cache = s2s.forward(params, config, batch)
    dy_grads = s2s.backward(dy, cache, params, config)
    loss, loss_grads = s2s.loss_and_grads(params, config, batch)

    tp = {n: torch.tensor(v, requires_grad=True) for n, v in params.items()}
    per_example = [torch_logits(tp, config, list(s), list(t[0])) for s, t in examples]
    for b, t_logits in enumerate(per_example):
        np.testing.assert_allclose(logits[:len(t_logits), b], t_logits.detach().numpy(), **TOL)
    objective = sum((t_logits * torch.tensor(dy[:len(t_logits), b])).sum() for b, t_logits in enumerate(per_example))
    for name, torch_grad in zip(tp, torch.autograd.grad(objective, list(tp.values()), retain_graph=True), strict=True):
        np.testing.assert_allclose(dy_grads[name], torch_grad.numpy(), err_msg=name, **TOL)

    nll = [torch.nn.functional.cross_entropy(t_logits, torch.tensor(t[1]), reduction="sum")
           for t_logits, (_, t) in zip(per_example, examples, strict=True)]
    t_loss = sum(nll) / batch.n_tokens
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    for name, torch_grad in zip(tp, torch.autograd.grad(t_loss, list(tp.values())), strict=True):
        np.testing.assert_allclose(loss_grads[name], torch_grad.numpy(), err_msg=name, **TOL)
