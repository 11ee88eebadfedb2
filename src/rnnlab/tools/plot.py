"""Loss curves from a ``--metrics_file`` (matplotlib, an optional extra: ``pip install 'rnnlab[plot]'``)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from .. import files
from ..errors import RnnlabError, require
from ..files import read_bytes

PLOT_FORMATS = ("png", "svg", "pdf")
CURVES = ("train_loss", "smooth_loss", "val_loss")
MAX_METRICS_BYTES = 1 << 30
# The ranges of what a training run writes: a loss is >= 0 and stays below 3x the first loss (the divergence
# guard), itself about ln V < 15 nats; a step counts optimisation steps. Anything beyond is a damaged file
# (and values such as 1e308 would break the axes' arithmetic).
RANGES = {"step": (0, 10 ** 12), **{key: (0.0, 1e6) for key in CURVES}}
MAX_STATE = 1e30


def read_metrics(path) -> list[dict]:
    """The records of a ``--metrics_file`` (one JSON object per line), checked: every line an object, every
    value that is plotted a finite number. One RnnlabError names the first bad line."""
    data = read_bytes(path, "metrics file", MAX_METRICS_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RnnlabError(f"metrics file {path} is not UTF-8 text (bad byte at offset {err.start}): give the "
                          "--metrics_file of a training run") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise RnnlabError(f"{where} is not JSON: give a file written by --metrics_file") from None
        require(isinstance(record, dict), f"{where} is not a JSON object: give a file written by --metrics_file")
        for key, (low, high) in RANGES.items():                   # absent is fine; present must be a number
            value = record.get(key)
            require(value is None or (type(value) in (int, float) and math.isfinite(value)),
                    f"{where}: {key} is {value!r}, not a finite number: give a file written by --metrics_file")
            require(value is None or low <= value <= high,
                    f"{where}: {key} is {value!r}, outside [{low:g}, {high:g}] where a training run's values lie: "
                    "the file is damaged; give a file written by --metrics_file")
        records.append(record)
    require(any("step" in r for r in records), f"{path} has no metrics records (no 'step' field)")
    return records


def superseded_dropped(records: list[dict]) -> list[dict]:
    """The records as the run stands now. The file is appended to: a run resumed from an earlier checkpoint
    repeats the steps after it, and a new run in the same file starts again from its first step. When the
    step goes back to s, the records before it with step >= s are replaced by what follows."""
    kept: list[dict] = []
    for record in records:
        step = record.get("step")
        if step is not None:
            while kept and kept[-1].get("step") is not None and kept[-1]["step"] >= step:
                kept.pop()
        kept.append(record)
    return kept


X_AXES = {"step": ("step", 1.0, "step"), "minutes": ("elapsed_s", 1 / 60, "training time (minutes)")}   # --x


def curve(records: list[dict], key: str, x: str = "step") -> list[tuple]:
    """(x, value) of every record that has both: x is the step, or the training minutes so far (elapsed_s,
    training steps only) to compare runs of different speeds at equal time."""
    field, scale, _ = X_AXES[x]
    return [(r[field] * scale, r[key]) for r in records if r.get(key) is not None and r.get(field) is not None]


def loss_axes(ax) -> None:
    """Nats on the left axis, bits/char on the right, a light grid."""
    ax.set_ylabel("loss (nats / character)")
    right = ax.secondary_yaxis("right", functions=(lambda n: n / math.log(2), lambda b: b * math.log(2)))
    right.set_ylabel("bits / character")
    ax.grid(alpha=0.3)


def check_plot_path(out_path, flag: str = "--out", overwrite: bool = False) -> Path:
    """``flag`` must name a .png, .svg or .pdf file in an existing folder that the output guard lets this run
    write (checked before any drawing)."""
    out_path = Path(out_path)
    fmt = out_path.suffix.lower().lstrip(".")
    require(fmt in PLOT_FORMATS, f"{flag} {out_path}: rnnlab writes {', '.join('.' + f for f in PLOT_FORMATS)} "
                                 "images; give a file name with one of those endings")
    require(out_path.parent.is_dir(), f"{flag} {out_path}: directory {out_path.parent} does not exist")
    files.check_output(out_path, files.IMAGE, flag, overwrite)
    return out_path


def run_label(path) -> str:
    """A run's name in a legend: the file's stem, or its folder's name for a file called metrics.jsonl."""
    path = Path(path)
    return path.parent.name or path.stem if path.name == "metrics.jsonl" else path.stem


def plot_metrics(metrics_path, out_path, title: str | None = None, labels: list[str] | None = None,
                 overwrite: bool = False, x: str = "step") -> Path:
    """Train (smoothed) and validation loss against step; nats on the left axis, bits/char on the right. When
    the records carry ``state_max`` (the largest |state| per layer, health.py), a second panel shows it.
    Several metrics files (a list): each run's validation curve (and smoothed training loss, dashed, in the
    same colour) on one panel, to compare runs at equal steps -- or at equal training time, ``x="minutes"``."""
    require(x in X_AXES, f"--x must be one of {', '.join(X_AXES)}, got {x!r}")
    if not isinstance(metrics_path, (str, Path)):
        paths = list(metrics_path)
        if len(paths) > 1:
            return plot_runs(paths, out_path, title, labels or [run_label(p) for p in paths], overwrite, x)
        metrics_path = paths[0]
    records = superseded_dropped(read_metrics(metrics_path))      # read first: the guard then knows the input
    out_path = check_plot_path(out_path, overwrite=overwrite)
    plt = pyplot("rnnlab plot")
    field, scale, x_label = X_AXES[x]
    states = [(r[field] * scale, r["state_max"]) for r in records
              if valid_state_max(r.get("state_max")) and r.get(field) is not None]
    fig, axes = plt.subplots(2 if states else 1, 1, figsize=(8, 6.5 if states else 4.5), dpi=110, sharex=True,
                             squeeze=False, gridspec_kw={"height_ratios": [3, 1.3] if states else [1]})
    ax = axes[0, 0]
    for key, label, style in (("train_loss", "train (batch)", dict(alpha=0.25, lw=0.8)),
                              ("smooth_loss", "train (smoothed)", dict(lw=1.6)),
                              ("val_loss", "validation", dict(lw=1.8, marker="o", ms=3))):
        points = curve(records, key, x)
        if points:
            ax.plot(*zip(*points, strict=True), label=label, **style)
    loss_axes(ax)
    ax.legend()
    ax.set_title(title or Path(metrics_path).name)
    if states:
        low = axes[1, 0]
        for layer in range(max(len(values) for _, values in states)):
            points = [(step, values[layer]) for step, values in states if layer < len(values)]
            low.plot(*zip(*points, strict=True), lw=1.2, label=f"layer {layer}")
        low.set_ylabel("largest |state|")
        low.set_yscale("log")
        low.grid(alpha=0.3)
        low.legend(fontsize=8)
    axes[-1, 0].set_xlabel(x_label)
    return save_figure(plt, fig, out_path, overwrite=overwrite)


def plot_runs(paths: list, out_path, title: str | None, labels: list[str], overwrite: bool = False,
              x: str = "step") -> Path:
    """Several runs on one panel: validation (solid, markers) and smoothed training loss (dashed)."""
    runs = [superseded_dropped(read_metrics(path)) for path in paths]   # every file checked before drawing
    out_path = check_plot_path(out_path, overwrite=overwrite)
    plt = pyplot("rnnlab plot")
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for number, (records, label) in enumerate(zip(runs, labels, strict=True)):
        colour = colours[number % len(colours)]
        for key, suffix, style in (("val_loss", "validation", dict(lw=1.8, marker="o", ms=3)),
                                   ("smooth_loss", "train (smoothed)", dict(lw=1.0, ls="--", alpha=0.7))):
            points = curve(records, key, x)
            if points:
                ax.plot(*zip(*points, strict=True), color=colour, label=f"{label}: {suffix}", **style)
    ax.set_xlabel(X_AXES[x][2])
    loss_axes(ax)
    ax.legend(fontsize=8)
    ax.set_title(title or " vs ".join(labels))
    return save_figure(plt, fig, out_path, overwrite=overwrite)


def valid_state_max(value) -> bool:
    """A list of finite non-negative numbers (anything else in a metrics line is left out of the panel)."""
    return (isinstance(value, list) and bool(value) and
            all(type(x) in (int, float) and math.isfinite(x) and 0 <= x <= MAX_STATE for x in value))


def pyplot(what: str):
    """matplotlib.pyplot with the Agg backend (no display needed), or RnnlabError naming the extra to install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise RnnlabError(f"{what} needs matplotlib: pip install 'rnnlab[plot]'") from None
    return plt


def save_figure(plt, fig, out_path, flag: str = "--out", overwrite: bool = False) -> Path:
    """Write ``fig`` in the format of ``out_path``'s suffix (png without one) through the output guard,
    atomically (an old plot is never half-overwritten), marked as rnnlab's, and close it."""
    out_path = Path(out_path)
    fmt = out_path.suffix.lower().lstrip(".") or "png"
    fig.tight_layout()
    buffer = io.BytesIO()
    mark = {"Software": files.GENERATOR} if fmt == "png" else {"Creator": files.GENERATOR}  # files.IMAGE's mark
    fig.savefig(buffer, format=fmt, metadata=mark)
    plt.close(fig)
    return files.write_file(out_path, buffer.getvalue(), files.IMAGE, flag, overwrite)
