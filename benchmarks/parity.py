"""rnnlab against an independent PyTorch model: validation loss at equal steps, and speed, side by side.

    python benchmarks/parity.py                                   # rnn, lstm, gru x seeds 0-2, 1,000 steps
    python benchmarks/parity.py --cells lstm --seeds 0 --init blockorth --engines rnnlab   # one ablation row
    python benchmarks/parity.py --quick                           # smoke test: tiny model, seconds
    python benchmarks/parity.py --cells lstm --seeds 0 --engines torch --steps 5000 --eval_every 500 \
        --learning_rate 0.003 --dropout 0.25 --lr_schedule cosine   # PyTorch beside a pretrained model's recipe

What is the same on both sides: the corpus, its train/validation split, the (T, B) windows in the same
order (rnnlab's ``StreamBatches``, the state carried from window to window and reset at the same places),
the validation pass (state carried through the validation text), and the hyper-parameters -- Adam with
PyTorch's defaults (betas 0.9/0.999, eps 1e-8), a global-norm clip, no per-entry clip, dropout between
the stacked layers only (``--dropout``, default none; off while validating) and the learning-rate schedule
(``--lr_schedule cosine``: rnnlab's formula, decaying to lr / 20 over --steps, applied to torch.optim's
learning rate before each step).

What is independent: the PyTorch side is written here with ``torch.nn`` layers and PyTorch's own defaults,
not rnnlab's engine or converted weights -- a one-hot input, ``nn.RNN/LSTM/GRU(num_layers=L)`` with its own
initialisation (every weight and both biases U(+-1/sqrt(H))), an ``nn.Linear`` head, ``F.cross_entropy``,
``clip_grad_norm_`` and ``torch.optim.Adam``. rnnlab trains through ``rnnlab.training.trainer.Trainer``.

Timing: the two engines take turns, ``--eval_every`` steps each, so both see the same machine load; each
engine's tokens/s counts its training steps only (not validation). For each engine the script also
records the largest |h| and |c| of the carried state at any window boundary, per layer.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time

import numpy as np

from rnnlab.nn.optim import scheduled_learning_rate
from rnnlab.training.trainer import TrainConfig, Trainer

QUICK = dict(cells="rnn,lstm,gru", seeds="0", steps=20, eval_every=10, hidden_size=16, num_layers=2,
             batch_size=4, seq_length=16, val_fraction=0.01)
SETTLE_S = 0.3   # PyTorch's OpenMP threads spin for a while after their work; let them stop before numpy runs


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cells")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (each engine seeds itself)")
    parser.add_argument("--engines", default="rnnlab,torch", help="rnnlab, torch or both")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval_every", type=int, default=250, help="validation (and engine turn) every N steps")
    parser.add_argument("--dataset", default="shakespeare", help="a shipped corpus or a text file (stream mode)")
    parser.add_argument("--val_fraction", type=float, default=0.1)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_length", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--clip_norm", type=float, default=5.0)
    parser.add_argument("--dropout", type=float, default=0.0, help="between the stacked layers, training only")
    parser.add_argument("--lr_schedule", choices=("constant", "cosine"), default="constant",
                        help="cosine: from --learning_rate down to a twentieth of it over --steps")
    parser.add_argument("--init", default="rnnlab",
                        help="rnnlab's initialisation scheme (rnnlab train --init); several, comma-separated, "
                             "train one rnnlab model each, side by side")
    parser.add_argument("--forget_bias", type=float, default=None, help="rnnlab's LSTM forget bias (--forget_bias)")
    parser.add_argument("--torch_one_bias", action="store_true",
                        help="ablation: PyTorch's RNN/LSTM with one trainable bias as rnnlab's (bias_ih + bias_hh "
                             "at the start, bias_hh then frozen at 0) instead of two")
    parser.add_argument("--no_carry", action="store_true",
                        help="ablation: start every training window from a zero state (both engines)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for each engine: the NumPy engine's --threads (batch shards) and its BLAS "
                             "threads (restarts the script with OPENBLAS_NUM_THREADS), torch.set_num_threads")
    parser.add_argument("--json", default=None, help="also write every measurement to this JSON file")
    parser.add_argument("--metrics_dir", default=None,
                        help="also write each run's validation curve as ENGINE-CELL-seedS.jsonl in this folder, "
                             "in --metrics_file's format, for `rnnlab plot A.jsonl B.jsonl`")
    parser.add_argument("--from_json", nargs="+", default=None, metavar="FILE",
                        help="train nothing: print the table of earlier --json files (e.g. one per seed), merged")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    args = parser.parse_args(argv)
    if args.quick:
        given = argv if argv is not None else sys.argv[1:]
        explicit = {a.lstrip("-").split("=")[0] for a in given if a.startswith("--")}
        for key, value in QUICK.items():
            if key not in explicit:
                setattr(args, key, value)
    args.cells, args.engines, args.init = args.cells.split(","), args.engines.split(","), args.init.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    unknown = set(args.engines) - {"rnnlab", "torch"}
    if unknown:
        parser.error(f"unknown engine(s) {sorted(unknown)}: use rnnlab, torch")
    return args


def max_abs_state(layers) -> list[list[float]]:
    """Per layer, the largest |entry| of each state part: [[max|h|], ...] or [[max|h|, max|c|], ...]."""
    return [[float(np.abs(np.asarray(part)).max()) for part in layer] for layer in layers]


def running_max(old, new):
    if old is None:
        return new
    return [[max(a, b) for a, b in zip(x, y, strict=True)] for x, y in zip(old, new, strict=True)]


# --------------------------------------------------------------------------------------------------------
# rnnlab, through its Trainer
# --------------------------------------------------------------------------------------------------------

class RnnlabRun:
    def __init__(self, args, cell: str, seed: int, scheme: str):
        config = TrainConfig(dataset=args.dataset, data_mode="stream", cell=cell, hidden_size=args.hidden_size,
                             num_layers=args.num_layers, iterations=args.steps, batch_size=args.batch_size,
                             seq_length=args.seq_length, optimizer="adam", learning_rate=args.learning_rate,
                             clip_value=None, clip_norm=args.clip_norm, val_fraction=args.val_fraction,
                             seed=seed, init=scheme, forget_bias=args.forget_bias, dropout=args.dropout,
                             lr_schedule=args.lr_schedule, threads=args.threads)
        self.trainer = Trainer(config)
        self.train_windows = copy.deepcopy(self.trainer.batches)   # the same windows, untouched, for torch
        self.seconds, self.tokens, self.max_state = 0.0, 0, None
        self.carry = not args.no_carry

    def train(self, steps: int) -> None:
        for _ in range(steps):
            start = time.perf_counter()
            if not self.carry:
                self.trainer.state = None                        # the Trainer starts a None state at zero
            _, batch = self.trainer.advance()
            self.seconds += time.perf_counter() - start
            self.tokens += batch.n_tokens
            self.max_state = running_max(self.max_state, max_abs_state(self.trainer.state))

    def validation_loss(self) -> float:
        return self.trainer.validation_loss()


# --------------------------------------------------------------------------------------------------------
# PyTorch, independent: torch.nn layers with their own initialisation
# --------------------------------------------------------------------------------------------------------

class TorchRun:
    def __init__(self, args, cell: str, seed: int, vocab_size: int, train_windows, val_windows):
        import torch
        from torch import nn

        self.torch, self.F = torch, torch.nn.functional
        torch.manual_seed(seed)
        self.cell, self.V = cell, vocab_size
        module = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = module(vocab_size, args.hidden_size, num_layers=args.num_layers, dropout=args.dropout)
        self.head = nn.Linear(args.hidden_size, vocab_size)
        if args.torch_one_bias and cell != "gru":                # the GRU needs both (r multiplies bias_hh_n)
            with torch.no_grad():
                for k in range(args.num_layers):
                    b_ih, b_hh = getattr(self.rnn, f"bias_ih_l{k}"), getattr(self.rnn, f"bias_hh_l{k}")
                    b_ih += b_hh
                    b_hh.zero_()
                    b_hh.requires_grad_(False)
        self.parameters = [p for p in (*self.rnn.parameters(), *self.head.parameters()) if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.parameters, lr=args.learning_rate)
        self.schedule = (args.lr_schedule, args.steps, args.learning_rate, args.learning_rate / 20)
        self.step = 0
        self.clip_norm = args.clip_norm
        self.train_windows, self.val_windows = train_windows, val_windows
        self.state, self.seconds, self.tokens, self.max_state = None, 0.0, 0, None
        self.shape = (args.num_layers, args.batch_size, args.hidden_size)
        self.carry = not args.no_carry

    def zero_state(self, batch_size: int):
        zeros = lambda: self.torch.zeros(self.shape[0], batch_size, self.shape[2])  # noqa: E731
        return (zeros(), zeros()) if self.cell == "lstm" else zeros()

    def forward(self, batch, state):
        ids = self.torch.from_numpy(np.asarray(batch.ids, dtype=np.int64))            # (T, B)
        x = self.F.one_hot(ids, self.V).float()                                         # (T, B, V)
        hs, state = self.rnn(x, state)                                                  # (T, B, H)
        logits = self.head(hs)                                                          # (T, B, V)
        targets = self.torch.from_numpy(np.asarray(batch.targets, dtype=np.int64))
        return self.F.cross_entropy(logits.reshape(-1, self.V), targets.reshape(-1)), state

    def train(self, steps: int) -> None:
        for _ in range(steps):
            start = time.perf_counter()
            batch = next(self.train_windows)
            if self.state is None or batch.reset_state or not self.carry:
                self.state = self.zero_state(batch.ids.shape[1])
            self.step += 1
            schedule, total, lr, floor = self.schedule
            for group in self.optimizer.param_groups:
                group["lr"] = scheduled_learning_rate(schedule, self.step, total, lr, floor)
            loss, state = self.forward(batch, self.state)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_norm)
            self.optimizer.step()
            self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            self.seconds += time.perf_counter() - start
            self.tokens += batch.n_tokens
            parts = self.state if isinstance(self.state, tuple) else (self.state,)
            layers = [tuple(part[k].numpy() for part in parts) for k in range(self.shape[0])]
            self.max_state = running_max(self.max_state, max_abs_state(layers))

    def validation_loss(self) -> float:
        total, count, state = 0.0, 0, None
        self.rnn.eval()                                          # no dropout while validating
        with self.torch.no_grad():
            for batch in self.val_windows:
                if state is None or batch.reset_state:
                    state = self.zero_state(batch.ids.shape[1])
                loss, state = self.forward(batch, state)
                total, count = total + float(loss) * batch.n_tokens, count + batch.n_tokens
        self.rnn.train()
        return total / count


# --------------------------------------------------------------------------------------------------------
# One cell x seed: the engines take turns
# --------------------------------------------------------------------------------------------------------

def engine_labels(args) -> list[str]:
    """The runs, in turn order: one rnnlab run per --init scheme ("rnnlab", or "rnnlab:SCHEME" when several
    are compared), then torch."""
    labels = []
    if "rnnlab" in args.engines:
        labels += ["rnnlab"] if len(args.init) == 1 else [f"rnnlab:{scheme}" for scheme in args.init]
    return labels + (["torch"] if "torch" in args.engines else [])


def run_pair(args, cell: str, seed: int) -> dict:
    """Train every engine on one cell and seed, taking turns; -> {label: measurements}."""
    rnnlab_runs = [RnnlabRun(args, cell, seed, scheme) for scheme in args.init]   # the first also serves torch
    first = rnnlab_runs[0]
    runs = {}
    if "rnnlab" in args.engines:
        runs.update(zip(engine_labels(args)[:len(rnnlab_runs)], rnnlab_runs, strict=True))
    if "torch" in args.engines:
        runs["torch"] = TorchRun(args, cell, seed, first.trainer.tokenizer.vocab_size, first.train_windows,
                                 first.trainer.val_batches)
    curves, state_curves = {name: {} for name in runs}, {name: {} for name in runs}
    done = 0
    while done < args.steps:
        chunk = min(args.eval_every, args.steps - done)
        for name, run in runs.items():
            time.sleep(SETTLE_S)
            run.train(chunk)
            curves[name][done + chunk] = run.validation_loss()
            state_curves[name][done + chunk] = run.max_state
        done += chunk
    return {name: {"val": curves[name], "tokens_per_s": run.tokens / run.seconds, "max_state": run.max_state,
                   "max_state_so_far": state_curves[name]}
            for name, run in runs.items()}


def state_text(max_state) -> str:
    return " / ".join(",".join(f"{v:.1f}" for v in layer) for layer in max_state)


def report(args, results: dict) -> str:
    """Markdown: per cell, mean validation over the seeds at each evaluated step, each rnnlab run's gap to
    torch (mean, then per seed), speed and the largest carried state."""
    labels = engine_labels(args)
    ours = [label for label in labels if label != "torch"] if "torch" in labels else []
    lines = []
    for cell in args.cells:
        seeds = results[cell]
        steps = sorted(next(iter(seeds.values()))[labels[0]]["val"])
        lines += ["", f"### {cell}  ({len(seeds)} seed(s): {', '.join(map(str, seeds))})", ""]
        head = "| step | " + " | ".join(f"{e} val" for e in labels) + " |"
        head += "".join(f" {e} - torch (per seed) |" for e in ours)
        lines += [head, "|---:" * (head.count("|") - 1) + "|"]
        for step in steps:
            means = {e: statistics.mean(seeds[s][e]["val"][step] for s in seeds) for e in labels}
            row = f"| {step:,} | " + " | ".join(f"{means[e]:.3f}" for e in labels) + " |"
            for e in ours:
                gaps = [seeds[s][e]["val"][step] - seeds[s]["torch"]["val"][step] for s in seeds]
                row += f" {means[e] - means['torch']:+.3f} ({', '.join(f'{g:+.3f}' for g in gaps)}) |"
            lines.append(row)
        lines.append("")
        for e in labels:
            rates = [seeds[s][e]["tokens_per_s"] for s in seeds]
            states = "; ".join(f"seed {s}: {state_text(seeds[s][e]['max_state'])}" for s in seeds)
            lines.append(f"- {e}: {statistics.median(rates) / 1e3:.1f}k tokens/s (median over seeds); "
                         f"largest |state| per layer (h[,c]) {states}")
        for e in ours:
            ratios = [seeds[s][e]["tokens_per_s"] / seeds[s]["torch"]["tokens_per_s"] for s in seeds]
            lines.append(f"- speed {e} / torch: {statistics.median(ratios):.2f}x (median of per-seed ratios)")
    return "\n".join(lines)


def merge_json(paths: list[str]):
    """-> (args, results) of several --json files of the same configuration, their seeds merged."""
    results, args = {}, None
    for path in paths:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        args = args or argparse.Namespace(**data["args"])
        for cell, seeds in data["results"].items():
            for seed, runs in seeds.items():
                for run in runs.values():
                    for key in ("val", "max_state_so_far"):
                        run[key] = {int(step): value for step, value in run.get(key, {}).items()}
                results.setdefault(cell, {})[int(seed)] = runs
    args.cells = list(results)
    args.init = args.init.split(",") if isinstance(args.init, str) else args.init
    return args, results


def write_curves(folder: str, results: dict) -> None:
    """One JSONL per run, a {"step", "val_loss"} line per evaluation (what rnnlab plot reads)."""
    os.makedirs(folder, exist_ok=True)
    for cell, seeds in results.items():
        for seed, runs in seeds.items():
            for engine, run in runs.items():
                lines = [json.dumps({"step": step, "val_loss": loss}) for step, loss in sorted(run["val"].items())]
                path = os.path.join(folder, f"{engine.replace(':', '-')}-{cell}-seed{seed}.jsonl")
                with open(path, "w", encoding="utf-8") as f:
                    f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        print(report(*merge_json(args.from_json)))
        return 0
    if args.threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
        os.execv(sys.executable, [sys.executable, *sys.argv])      # BLAS reads its thread count at import
    if "torch" in args.engines and args.threads:
        import torch
        torch.set_num_threads(args.threads)
    print(f"# parity: {args.dataset}, {args.num_layers} x {args.hidden_size}, batch {args.batch_size} x "
          f"{args.seq_length}, Adam {args.learning_rate:g}, clip-norm {args.clip_norm:g}, {args.steps} steps; "
          f"rnnlab --init {','.join(args.init)}"
          + ("" if args.forget_bias is None else f" --forget_bias {args.forget_bias:g}")
          + ("" if not args.dropout else f", dropout {args.dropout:g}")
          + ("" if args.lr_schedule == "constant" else f", {args.lr_schedule} schedule")
          + ("; state reset every window" if args.no_carry else "")
          + ("; torch with one trainable bias" if args.torch_one_bias else ""),
          flush=True)
    results = {}
    for cell in args.cells:
        results[cell] = {}
        for seed in args.seeds:
            started = time.perf_counter()
            results[cell][seed] = run_pair(args, cell, seed)
            last = {e: r["val"][max(r["val"])] for e, r in results[cell][seed].items()}
            print(f"  {cell} seed {seed}: " + ", ".join(f"{e} {v:.3f}" for e, v in last.items())
                  + f" at step {args.steps} ({time.perf_counter() - started:.0f} s)", flush=True)
    print(report(args, results))
    if args.metrics_dir:
        write_curves(args.metrics_dir, results)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": {k: v for k, v in vars(args).items() if k != "json"}, "results": results}, f, indent=1)
    nonfinite = [v for c in results.values() for s in c.values() for r in s.values() for v in r["val"].values()
                 if not math.isfinite(v)]
    return 1 if nonfinite else 0


if __name__ == "__main__":
    sys.exit(main())
