"""Where did the translator look? Attention heatmaps: a self-contained HTML page and a static image.

For a translation of source x_1 .. x_S into y_1 .. y_n, row i of the matrix is the attention weights
alpha_i (1 x S) the decoder used while predicting y_i (``translate.Translation.attention``, rows summing to 1).
A good date translator looks at the year's digits while writing the year, at the month name (or number) while
writing the month, and so on: a roughly monotone band, with jumps where the source order differs from ISO
order ("may 9 2018" -> the year first).

:func:`render_attention_html` writes every translation as a grid (output characters down, source characters
across, darker = more weight; hovering a cell shows its weight) into ``templates/attention.html``, with no
network access (inline CSS and JS, data as JSON in a ``<script>`` tag). :func:`write_attention_png` draws one
translation with matplotlib (the optional ``plot`` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import require
from .plot import pyplot, save_figure
from .visualize import render_template, rounded, write_html


def attention_page_data(translations: list) -> dict:
    """The JSON-able document the page's script reads; weights rounded to 4 decimals."""
    require(len(translations) > 0, "no translations to show")
    for t in translations:
        require(t.attention.shape == (len(t.output), len(t.source)),
                f"attention of {t.source!r} has shape {t.attention.shape}, expected "
                f"({len(t.output)}, {len(t.source)}) (output x source characters)")
    return {"format": 1,
            "translations": [{"source": t.source, "output": t.output, "weights": rounded(t.attention, 4),
                              "logprob": round(float(t.logprob), 4), "finished": bool(t.finished)}
                             for t in translations]}


def render_attention_html(translations: list, title: str = "rnnlab attention") -> str:
    """The whole page as one string."""
    return render_template("attention.html", title, attention_page_data(translations))


def write_attention_html(path, translations: list, title: str = "rnnlab attention", overwrite: bool = False) -> Path:
    """Write the page through the output guard, atomically."""
    return write_html(path, render_attention_html(translations, title), overwrite)


def shown(ch: str) -> str:
    """A visible label for a character: the space as '␣'."""
    return "\u2423" if ch == " " else ch


def write_attention_png(path, translation, title: str | None = None, overwrite: bool = False) -> Path:
    """One translation's weights as an image: output characters down, source characters across."""
    plt = pyplot("the attention image (--png)")
    t = translation
    require(len(t.output) > 0 and len(t.source) > 0, f"nothing to draw: the translation of {t.source!r} is empty")
    S, n = len(t.source), len(t.output)
    fig, ax = plt.subplots(figsize=(0.6 + 0.32 * S, 1.0 + 0.32 * n), dpi=120)
    image = ax.imshow(np.asarray(t.attention), cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
    ax.set_xticks(range(S), [shown(ch) for ch in t.source], family="monospace")
    ax.set_yticks(range(n), [shown(ch) for ch in t.output], family="monospace")
    ax.xaxis.tick_top()
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(title or f"{t.source} -> {t.output}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="attention weight")
    return save_figure(plt, fig, path, "--png", overwrite)


def attention_text(translation, decimals: int = 2) -> str:
    """The matrix as plain text (``rnnlab translate --show_attention``): a header of source characters, then
    one row per output character with its weights."""
    t = translation
    width = decimals + 3
    header = " " * 2 + "".join(f"{shown(ch):>{width}}" for ch in t.source)
    rows = [f"{shown(ch):<2}" + "".join(f"{w:>{width}.{decimals}f}" for w in row)
            for ch, row in zip(t.output, np.asarray(t.attention), strict=True)]
    return "\n".join([header, *rows])
