"""rnnlab's torch engine on a GPU against a bare PyTorch training loop: tokens per second, side by side.

    python benchmarks/gpu.py                              # LSTM and GRU at 2x256 B64 T100, 2x512 B128 T128,
                                                          # 2x1024 B128 T128 on --device auto (CUDA)
    python benchmarks/gpu.py --precision bf16 --json gpu-bf16.json
    python benchmarks/gpu.py --device cpu --quick         # smoke test (CI): a tiny shape, a few steps

Both sides do the same work per step: one-hot input over the Shakespeare vocabulary, a 2-layer
``nn.LSTM``/``nn.GRU``, an ``nn.Linear`` head, the mean cross-entropy, backward, a global-norm clip at 5 and
an Adam step, with the hidden state carried (detached) from one window to the next.

* **bare**: the loop as one would write it by hand -- random ids made on the device once, ``zero_grad``,
  forward, ``F.cross_entropy``, ``backward``, ``clip_grad_norm_``, ``step``. Nothing else.
* **rnnlab**: ``Trainer.advance()`` on the shipped Shakespeare text with ``--engine torch``: the real data
  path (windows gathered on the host and copied to the device every step), rnnlab's clipping, the
  learning-rate hook and its loss bookkeeping (losses read every 100 steps).

Timing: both are warmed up, then timed in interleaved rounds (rnnlab, bare, rnnlab, ...) of ``--steps``
steps, each round ended by waiting for the device; the median round gives tokens/s. ``ratio`` is rnnlab's
speed over the bare loop's (issue 14's target: 0.9 or more). docs/gpu.md records the results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.errors import RnnlabError
from rnnlab.frameworks.torch import TORCH_MODULES, resolve_device
from rnnlab.training.trainer import TrainConfig, Trainer

SHAPES = ((256, 64, 100), (512, 128, 128), (1024, 128, 128))   # (hidden, batch, seq), 2 layers each
QUICK_SHAPES = ((16, 4, 8),)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N, cpu, mps")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--steps", type=int, default=50, help="steps per timing round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one tiny shape, 3 steps x 2 rounds: a smoke test")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.rounds = 3, 2
    return args


def wait_for(device: torch.device) -> None:
    """Block until the device has finished the queued work (nothing to wait for on the CPU)."""
    if device.type in ("cuda", "mps"):
        getattr(torch, device.type).synchronize()


class BareLoop:
    """The hand-written loop: model, Adam, random ids on the device, state carried."""

    def __init__(self, cell: str, vocab: int, hidden: int, batch: int, seq: int, device, precision: str):
        torch.manual_seed(0)
        self.rnn = TORCH_MODULES[cell](vocab, hidden, num_layers=2).to(device)
        self.out = nn.Linear(hidden, vocab).to(device)
        self.params = list(self.rnn.parameters()) + list(self.out.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=2e-3)
        self.ids = torch.randint(0, vocab, (seq + 1, batch), device=device)
        self.vocab, self.device = vocab, device
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        zeros = torch.zeros(2, batch, hidden, device=device)
        self.state = (zeros, zeros.clone()) if cell == "lstm" else zeros

    def step(self) -> None:
        x = F.one_hot(self.ids[:-1], self.vocab).float()                           # (T, B, V)
        with torch.autocast(self.device.type, self.dtype, enabled=self.dtype is not None):
            hs, state = self.rnn(x, self.state)                                     # (T, B, H)
            logits = self.out(hs)                                                   # (T, B, V)
        loss = F.cross_entropy(logits.float().reshape(-1, self.vocab), self.ids[1:].reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            nn.utils.clip_grad_norm_(self.params, 5.0)
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.params, 5.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def rnnlab_trainer(cell: str, hidden: int, batch: int, seq: int, device: str, precision: str) -> Trainer:
    return Trainer(TrainConfig(dataset="shakespeare", engine="torch", device=device, precision=precision, cell=cell,
                               hidden_size=hidden, num_layers=2, batch_size=batch, seq_length=seq,
                               learning_rate=2e-3, clip_value=None, clip_norm=5.0, iterations=10 ** 9,
                               sample_every=10 ** 9))


def timed_round(step, steps: int, device) -> float:
    wait_for(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    wait_for(device)
    return time.perf_counter() - start


def measure(cell: str, shape: tuple, args) -> dict:
    hidden, batch, seq = shape
    trainer = rnnlab_trainer(cell, hidden, batch, seq, args.device, args.precision)
    device = trainer.engine.device
    bare = BareLoop(cell, trainer.tokenizer.vocab_size, hidden, batch, seq, device, args.precision)
    sides = {"rnnlab": trainer.advance, "bare": bare.step}
    for step in sides.values():                       # warm-up: cuDNN plans, allocator, optimizer state
        timed_round(step, max(2, args.steps // 5), device)
    seconds = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, step in sides.items():
            seconds[name].append(timed_round(step, args.steps, device) / args.steps)
    tokens = {name: batch * seq / statistics.median(times) for name, times in seconds.items()}
    trainer.close()
    return {"cell": cell, "hidden": hidden, "batch": batch, "seq": seq, "layers": 2, "device": str(device),
            "precision": args.precision, "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "rnnlab_tokens_per_s": tokens["rnnlab"], "bare_tokens_per_s": tokens["bare"],
            "ratio": tokens["rnnlab"] / tokens["bare"], "steps": args.steps, "rounds": args.rounds}


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
    except RnnlabError as err:
        print(f"gpu.py: error: {err}", file=sys.stderr)
        return 2
    rows = []
    print(f"device {device}, precision {args.precision}, torch {torch.__version__}", file=sys.stderr)
    print("| cell | layers x H | B | T | rnnlab tok/s | bare PyTorch tok/s | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for shape in (QUICK_SHAPES if args.quick else SHAPES):
        for cell in args.cells.split(","):
            row = measure(cell, shape, args)
            rows.append(row)
            print(f"| {cell} | 2x{row['hidden']} | {row['batch']} | {row['seq']} | {row['rnnlab_tokens_per_s']:,.0f} | "
                  f"{row['bare_tokens_per_s']:,.0f} | {row['ratio']:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
