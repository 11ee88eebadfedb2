"""What do the hidden units track, and what does the model expect next? One self-contained HTML page.

For a text x_1 .. x_T, run the trained model from the zero state and keep, for every layer, the state after
each character (the LSTM's cell state c_t and output h_t; the h_t of the RNN, GRU, minGRU and minLSTM --
in the residual block too: see :func:`layer_states`):

    a_t = state of one unit after reading x_t                      (T,) per unit, (T, H) per layer
    p_t = softmax(logits_t)                                         the next-character distribution (V,)

Structural features of the text, f_t (:data:`FEATURES`), are computed from the characters alone, and each
unit is scored against each feature by the absolute Pearson correlation over the T positions:

    r(a, f) = sum_t (a_t - mean a)(f_t - mean f) / sqrt(sum_t (a_t - mean a)^2  sum_t (f_t - mean f)^2)
    score   = |r| in [0, 1]                 (0 when a or f is constant: the correlation is undefined)

A unit with score near 1 for "inside quotes" switches on at an opening quote and off at the closing one
(Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding Recurrent Networks").

:func:`visualization_data` returns the numbers; :func:`render_html` turns them into a page with no network
access at all (inline CSS and JS, data as JSON in a ``<script>`` tag); :func:`write_html` writes it atomically.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .. import files
from ..data.text import NEWLINE, CharTokenizer
from ..errors import RnnlabError, require, require_finite
from ..files import read_bytes
from ..memory import require_memory
from ..nn import model as charmodel
from ..nn.activations import softmax
from ..nn.cells import CELLS

STATE_NAMES = ("h", "c")   # a cell's state tuple is (h,) or (h, c) (cells.py); names in that order
TOP_K = 5                  # next-character predictions kept per position
TOP_UNITS = 5              # units listed per feature


# --------------------------------------------------------------------------------------------------------
# Activations: every state of every layer after every character
# --------------------------------------------------------------------------------------------------------

def layer_states(params: dict, config: charmodel.ModelConfig, ids: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """ids (T,) -> ([per layer {"h": (T, H), "c": (T, H) for LSTM}], logits (T, V)), from the zero state.

    The model reads the text one character at a time, as sampling does (``model.forward`` on a window of
    one), and after each character every layer's *state* is kept: what the layer carries to the next
    character -- h, and the LSTM's c; for minGRU and minLSTM the h of their linear recurrence. In the
    residual block (``--block residual``) that is each recurrent layer's h too, not the residual stream,
    which is recomputed from the text and the states at every position and carried nowhere.
    """
    names = STATE_NAMES[:CELLS[config.cell].n_states]
    state = charmodel.zero_state(config, 1, params["Wy"].dtype)
    after, logits = [], []                                       # per character: the state, the logits (V,)
    for i in ids:
        out, state, _ = charmodel.forward(params, config, np.array([[i]]), state)   # (1, 1, V)
        after.append(state)
        logits.append(out[0, 0])
    layers = [{name: np.concatenate([s[layer][k] for s in after]) for k, name in enumerate(names)}   # (T, H)
              for layer in range(config.num_layers)]
    return layers, np.stack(logits)                              # (T, V)


def top_predictions(logits: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """logits (T, V) -> (ids (T, k), probabilities (T, k)), most likely first; p = softmax(logits) in float64."""
    p = softmax(np.asarray(logits, dtype=np.float64))           # (T, V)
    k = min(k, p.shape[1])
    ids = np.argsort(-p, axis=1, kind="stable")[:, :k]           # (T, k); ties: the lower id first
    return ids, np.take_along_axis(p, ids, axis=1)               # (T, k)


# --------------------------------------------------------------------------------------------------------
# Structural features of the text: one number per character, describing the position *after* reading it
# (that is when the unit's state is read), e.g. an opening quote is inside the quotes, a closing one outside.
# --------------------------------------------------------------------------------------------------------

def inside_quotes(text: str) -> list[float]:
    """1 from an opening double quote up to (not including) its closing one; “ ” open and close too."""
    inside, out = False, []
    for ch in text:
        inside = {'"': not inside, "“": True, "”": False}.get(ch, inside)
        out.append(float(inside))
    return out


def inside_brackets(text: str) -> list[float]:
    """1 while at least one ( [ { is open (the opening bracket counts as inside, the last closing one not)."""
    depth, out = 0, []
    for ch in text:
        depth = depth + 1 if ch in "([{" else max(depth - 1, 0) if ch in ")]}" else depth
        out.append(float(depth > 0))
    return out


def position_in_line(text: str) -> list[float]:
    """Characters read since the last newline, minus one: 0 for a line's first character."""
    column, out = 0, []
    for ch in text:
        out.append(float(column))
        column = 0 if ch == NEWLINE else column + 1
    return out


def position_in_word(text: str) -> list[float]:
    """1, 2, 3 ... through a run of letters; 0 on anything else."""
    run, out = 0, []
    for ch in text:
        run = run + 1 if ch.isalpha() else 0
        out.append(float(run))
    return out


@dataclass(frozen=True)
class Feature:
    name: str
    label: str
    compute: Callable[[str], list[float]]


FEATURES = (
    Feature("in_quotes", "inside quotes", inside_quotes),
    Feature("newline", "newline (start of a line)", lambda text: [float(ch == NEWLINE) for ch in text]),
    Feature("line_position", "position within the line", position_in_line),
    Feature("in_brackets", "inside brackets / parentheses", inside_brackets),
    Feature("punctuation", "punctuation (the next character follows it)",
            lambda text: [float(ch in ".,;:!?") for ch in text]),
    Feature("space", "space (between words)", lambda text: [float(ch == " ") for ch in text]),
    Feature("word_position", "position within a word", position_in_word),
    Feature("uppercase", "uppercase letter", lambda text: [float(ch.isupper()) for ch in text]),
)


def text_features(text: str) -> np.ndarray:
    """(F, T): row k is FEATURES[k] of every character."""
    return np.array([feature.compute(text) for feature in FEATURES], dtype=np.float64).reshape(len(FEATURES), len(text))


def correlations(features: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """Pearson r of every feature with every unit: features (F, T), activations (T, H) -> (F, H) in [-1, 1].

    Both sides are centred and scaled to unit norm, so r is one matrix product; a constant row or column
    (a feature absent from the text, a unit that never moves) has no correlation and gets 0.
    """
    f = features - features.mean(axis=1, keepdims=True)         # (F, T)
    a = activations - activations.mean(axis=0, keepdims=True)   # (T, H)
    f_norm = np.linalg.norm(f, axis=1, keepdims=True)            # (F, 1)
    a_norm = np.linalg.norm(a, axis=0, keepdims=True)            # (1, H)
    tiny = 1e-12 * max(len(a), 1)                                # below this, treat as constant (rounding noise)
    f = np.divide(f, f_norm, out=np.zeros_like(f), where=f_norm > tiny)
    a = np.divide(a, a_norm, out=np.zeros_like(a), where=a_norm > tiny)
    return np.clip(f @ a, -1.0, 1.0)                             # (F, H)


def rank_units(correlation: np.ndarray) -> np.ndarray:
    """Unit ids, the one with the highest |r| for any feature first: correlation (F, H) -> (H,)."""
    best = np.abs(correlation).max(axis=0)                       # (H,)
    return np.argsort(-best, kind="stable")


def top_units(correlation: np.ndarray, n: int = TOP_UNITS) -> np.ndarray:
    """(F, H) -> (F, n) unit ids per feature, highest |r| first."""
    return np.argsort(-np.abs(correlation), axis=1, kind="stable")[:, :n]


# --------------------------------------------------------------------------------------------------------
# The data of one page
# --------------------------------------------------------------------------------------------------------

@dataclass
class Visualization:
    text: str                   # the visualised text (at most max_chars of it), T characters
    total_chars: int            # length of the text before truncation
    config: charmodel.ModelConfig
    vocabulary: list[str]       # id -> character
    states: list[dict]          # per layer {"h": (T, H)[, "c": (T, H)]}, float64
    features: np.ndarray        # (F, T), FEATURES in order
    correlation: list[dict]     # per layer {state name: (F, H) Pearson r}
    logits: np.ndarray          # (T, V): the prediction for the character after each position
    top_ids: np.ndarray         # (T, k)
    top_probs: np.ndarray       # (T, k), sorted descending
    next_prob: np.ndarray       # (T,): probability given to the character that actually follows; nan at the end


def read_text_argument(value: str, path_like_is_path: bool = True) -> str:
    """--text: the contents of a UTF-8 file if ``value`` names one, else ``value`` itself -- unless it looks
    like a path (ends with .txt or contains '/') and ``path_like_is_path``, in which case a missing file is an
    error, not text (a translator's inputs, such as dates, may contain '/')."""
    require(value != "", "--text is empty: give a UTF-8 file or a non-empty string")
    try:
        is_path = Path(value).exists()
    except (OSError, ValueError):                                # too long for a file name, NUL bytes
        is_path = False
    if is_path:
        try:
            text = read_bytes(value, "--text file").decode("utf-8-sig").replace("\r\n", NEWLINE)
        except UnicodeDecodeError as err:
            raise RnnlabError(f"--text file {value!r} is not valid UTF-8 (bad byte at offset {err.start}): "
                              "convert it, e.g. with `iconv -t utf-8`") from None
        require(text != "", f"--text file {value!r} is empty: give a file with text in it")
        return text
    if path_like_is_path and (value.endswith(".txt") or "/" in value):
        raise RnnlabError(f"--text file {value!r} not found: give an existing UTF-8 file "
                          "(text containing '/' or ending in .txt must be put in a file)")
    return value


def visualization_data(params: dict, config: charmodel.ModelConfig, tokenizer: CharTokenizer, text: str,
                       max_chars: int = 3000) -> Visualization:
    """Activations, feature correlations and next-character predictions for the first ``max_chars`` of text."""
    require(max_chars > 0, f"--max_chars must be > 0, got {max_chars}")
    require(text != "", "the text is empty: give at least one character")
    shown = text[:max_chars]
    unknown = sorted(set(shown) - tokenizer.index.keys())
    if unknown and tokenizer.unk_token is None:
        names = ", ".join(repr(ch) for ch in unknown[:20]) + (", ..." if len(unknown) > 20 else "")
        raise RnnlabError(f"the text has {len(unknown)} character(s) outside the checkpoint's vocabulary: {names}; "
                          "remove them or use a checkpoint trained on text that has them")
    ids = tokenizer.encode(shown)                                # (T,)
    widths = config.num_layers * config.hidden_size * 2 * 4     # states, their float64 copies, correlations
    require_memory(8 * len(ids) * (widths + 4 * config.vocab_size + 2 * len(FEATURES)),
                   f"visualising {len(ids):,} characters", "give a smaller --max_chars")
    layers, logits = layer_states(params, config, ids)
    require_finite(logits)
    for layer in layers:
        for value in layer.values():
            require_finite(value)
    states = [{name: value.astype(np.float64) for name, value in layer.items()} for layer in layers]
    features = text_features(shown)                              # (F, T)
    top_ids, top_probs = top_predictions(logits)
    p = softmax(logits.astype(np.float64))                        # (T, V)
    next_prob = np.append(p[np.arange(len(ids) - 1), ids[1:]], np.nan)  # (T,)
    return Visualization(
        text=shown, total_chars=len(text), config=config, vocabulary=list(tokenizer.chars), states=states,
        features=features,
        correlation=[{name: correlations(features, a) for name, a in layer.items()} for layer in states],
        logits=logits, top_ids=top_ids, top_probs=top_probs, next_prob=next_prob)


# --------------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------------

def rounded(array: np.ndarray, decimals: int) -> list:
    return np.round(np.asarray(array, dtype=np.float64), decimals).tolist()


def page_data(vis: Visualization, layer: int | None = None) -> dict:
    """The JSON-able document the page's script reads. Activations are stored unit-major, (H, T) per state, so
    that recolouring the text for one unit reads one list."""
    L = vis.config.num_layers
    layer = L - 1 if layer is None else layer
    require(0 <= layer < L, f"--layer must be between 0 and {L - 1} (the model has {L} layer(s)), got {layer}")
    names = list(vis.states[0])
    shown_first = "c" if "c" in names else "h"                   # the LSTM's memory is the interesting part
    order = [{name: rank_units(r).tolist() for name, r in layer_r.items()} for layer_r in vis.correlation]
    return {
        "format": 1,
        "cell": vis.config.cell, "num_layers": L, "hidden_size": vis.config.hidden_size,
        "text": vis.text, "total_chars": vis.total_chars, "vocabulary": vis.vocabulary,
        "states": [shown_first] + [n for n in names if n != shown_first],
        "squash": {"c": "tanh"},                                 # c is unbounded: colour tanh(c); h is in (-1, 1)
        "activations": [{name: rounded(a.T, 3) for name, a in per_layer.items()} for per_layer in vis.states],
        "features": [{"name": f.name, "label": f.label, "present": bool(np.ptp(row) > 0), "values": rounded(row, 3)}
                     for f, row in zip(FEATURES, vis.features, strict=True)],
        "correlation": [{name: rounded(r, 3) for name, r in layer_r.items()} for layer_r in vis.correlation],
        "top_units": [{name: top_units(r).tolist() for name, r in layer_r.items()} for layer_r in vis.correlation],
        "unit_order": order,
        "predictions": {"ids": vis.top_ids.tolist(), "probs": rounded(vis.top_probs, 4),
                        "next_prob": [None if np.isnan(p) else round(float(p), 4) for p in vis.next_prob]},
        "initial": {"layer": layer, "state": shown_first, "unit": order[layer][shown_first][0]},
    }


def script_json(data: dict) -> str:
    """JSON that is safe inside <script>: every '<', '>' and '&' becomes a \\u escape (still the same JSON), so
    no '</script>' or '<!--' in the text can end the script element early."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(vis: Visualization, title: str = "rnnlab visualize", layer: int | None = None) -> str:
    """The whole page as one string: no external script, style sheet, font or image."""
    return render_template("visualize.html", title, page_data(vis, layer))


def render_template(name: str, title: str, data: dict) -> str:
    """A page of ``rnnlab/templates``: first every ``{{INCLUDE file}}`` becomes that file of the templates folder
    (the skeleton, style and scripts several pages share: head.html, data.html, *.css, *.js), then ``{{TITLE}}``
    (HTML-escaped) and ``{{DATA}}`` (script-safe JSON) are filled in, in one pass, so nothing in the data is
    ever substituted again."""
    templates = resources.files("rnnlab.templates")
    page = re.sub(r"\{\{INCLUDE ([\w.-]+\.(?:html|js|css))\}\}",
                  lambda m: templates.joinpath(m.group(1)).read_text(encoding="utf-8"),
                  templates.joinpath(name).read_text(encoding="utf-8"))
    values = {"TITLE": html.escape(title), "DATA": script_json(data)}
    return re.sub(r"\{\{(TITLE|DATA)\}\}", lambda m: values[m.group(1)], page)


def write_html(path, page: str, overwrite: bool = False) -> Path:
    """Write the page through the output guard, atomically (a reader never sees a half-written page)."""
    return files.write_file(path, page.encode("utf-8"), files.PAGE, "--out", overwrite)
