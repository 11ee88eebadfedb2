"""Compare rnnlab's five optimizers on one dinos run; draws docs/img/optimizers.png.

Every run uses the same seed, hence the same initial weights and the same order of batches; only the
update rule (and its default learning rate, from optim.py) differs. Validation loss and the smoothed training
loss are recorded every ``--eval_every`` steps through the Trainer's ``on_report`` callback.

    python scripts/plot_optimizers.py                     # about a minute on 2 CPU cores
    python scripts/plot_optimizers.py --epochs 5 --out /tmp/opt.png    # a quick look

SGD's default rate (0.1) is small for a loss averaged per character, so SGD is also run at ``--sgd_lr``
(dashed) to show that its slow start is the step size, not the direction.
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

from rnnlab.files import atomic_write_bytes
from rnnlab.nn.optim import make_optimizer
from rnnlab.training.trainer import Report, TrainConfig, Trainer

OPTIMIZERS = ("sgd", "momentum", "rms", "adam", "adagrad")
COLORS = {"sgd": "tab:gray", "momentum": "tab:blue", "rms": "tab:green", "adam": "tab:red", "adagrad": "tab:purple"}


def run(optimizer: str, lr: float | None, args) -> dict:
    """Train one model -> {"name", "lr", "steps", "val", "smooth"}: losses in nats/char."""
    config = TrainConfig(dataset="dinos", cell="rnn", hidden_size=args.hidden_size, optimizer=optimizer,
                         learning_rate=lr, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed,
                         eval_every=args.eval_every, sample_every=10**9, num_samples=1)
    reports: list[Report] = []
    trainer = Trainer(config, on_report=reports.append)
    initial = trainer.validation_loss()          # step 0: the same for every optimizer (same seed, same init)
    trainer.run()
    evaluated = [r for r in reports if r.val_loss is not None]
    return {"name": optimizer, "lr": trainer.optimizer.lr,
            "steps": [0] + [r.step for r in evaluated],
            "val": [initial] + [r.val_loss for r in evaluated],
            "smooth": [math.nan] + [r.smooth_loss for r in evaluated]}


def plot(results: list[dict], out: Path, title: str, batch_size: int) -> None:
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, (ax_val, ax_train) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=110, sharey=True)
    for r in results:
        style = dict(color=COLORS[r["name"]], lw=1.6)
        if r["extra"]:
            style.update(ls="--", lw=1.0, alpha=0.7)
        label = f"{r['name']} (lr {r['lr']:g})"
        ax_val.plot(r["steps"], r["val"], label=label, **style)
        ax_train.plot(r["steps"], r["smooth"], label=label, **style)
    for ax, what in ((ax_val, "validation loss"), (ax_train, "training loss (smoothed)")):
        ax.set_title(what)
        ax.set_xlabel(f"step (batch of {batch_size} names)")
        ax.grid(alpha=0.3)
    ax_val.set_ylabel("loss (nats / character)")
    right = ax_train.secondary_yaxis("right", functions=(lambda n: n / math.log(2), lambda b: b * math.log(2)))
    right.set_ylabel("bits / character")
    ax_val.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(out, buffer.getvalue(), "--out")  # a reader never sees a half-written PNG


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--hidden_size", type=int, default=50)
    parser.add_argument("--eval_every", type=int, default=19, help="steps between validations (half an epoch)")
    parser.add_argument("--sgd_lr", type=float, default=1.0, help="the extra, dashed SGD run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs/img/optimizers.png")
    args = parser.parse_args()

    runs = [(name, None) for name in OPTIMIZERS] + [("sgd", args.sgd_lr)]
    results = []
    print("| optimizer | lr | val at step 0 | val at first eval | best val (step) | last val | last smoothed train |")
    print("|---|---|---|---|---|---|---|")
    for name, lr in runs:
        r = run(name, lr, args)
        r["extra"] = lr is not None
        results.append(r)
        best = min(range(len(r["val"])), key=r["val"].__getitem__)
        print(f"| {name} | {r['lr']:g} | {r['val'][0]:.3f} | {r['val'][1]:.3f} (step {r['steps'][1]}) "
              f"| {r['val'][best]:.3f} ({r['steps'][best]}) | {r['val'][-1]:.3f} | {r['smooth'][-1]:.3f} |",
              flush=True)
    default_lrs = ", ".join(f"{n} {make_optimizer(n).lr:g}" for n in OPTIMIZERS)
    title = (f"dinos, RNN-{args.hidden_size}, batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}, "
             f"clip 5; default learning rates ({default_lrs})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, args.out, title, args.batch_size)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
