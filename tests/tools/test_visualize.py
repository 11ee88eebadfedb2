"""visualize.py and ``rnnlab visualize``: the states shown are the model's states, the feature scores are Pearson
correlations, the predictions are the model's softmax, the page is self-contained and safe for any text, and
it works in a real browser (headless Chromium, driven over W3C WebDriver by chromedriver).

The model is a 30-step LSTM (hidden 8) on a small generated text with quotes, brackets and punctuation: it
trains in well under a second and is shared by the module.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from browser import needs_browser, open_page, png_summary
from rnnlab.cli import main
from rnnlab.data.text import CharTokenizer
from rnnlab.errors import RnnlabError
from rnnlab.nn import model as charmodel
from rnnlab.nn.activations import softmax
from rnnlab.nn.cells import CELLS
from rnnlab.tools.visualize import (
    FEATURES,
    correlations,
    layer_states,
    page_data,
    rank_units,
    read_text_argument,
    render_html,
    text_features,
    top_predictions,
    top_units,
    visualization_data,
    write_html,
)
from rnnlab.training.checkpoint import load_checkpoint
from rnnlab.training.trainer import TrainConfig, Trainer

FEATURE_INDEX = {feature.name: k for k, feature in enumerate(FEATURES)}

LINES = [
    'He said "the cat sat." Then he left.',
    "A note (about the dog) was here; ok?",
    "Far away, [two dogs] ran! <b>x</b> & </script>",
    "the mat {and a hat}: done.",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    """A stream text with every structural feature, and the characters that could break out of <script>."""
    text = "".join(f"{line} {i}\n" for i in range(10) for line in LINES)
    path = tmp_path_factory.mktemp("data") / "stream.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, corpus) -> str:
    directory = tmp_path_factory.mktemp("ckpt")
    Trainer(TrainConfig(dataset=corpus, data_mode="stream", cell="lstm", hidden_size=8, iterations=30,
                        checkpoint_dir=str(directory), seed=0)).run()
    return str(directory)


@pytest.fixture(scope="module")
def checkpoint(checkpoint_dir):
    return load_checkpoint(checkpoint_dir)


@pytest.fixture(scope="module")
def sample_text() -> str:
    return "".join(LINES[:3]) + "\n" + LINES[3]


@pytest.fixture(scope="module")
def vis(checkpoint, sample_text):
    return visualization_data(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, sample_text)


# --- the data ------------------------------------------------------------------------------------------


def test_every_array_has_the_documented_shape(vis, checkpoint, sample_text):
    T, H, V, F = len(sample_text), 8, checkpoint.model_config.vocab_size, len(FEATURES)
    assert vis.text == sample_text and vis.total_chars == T
    assert len(vis.states) == 1 and set(vis.states[0]) == {"h", "c"}
    assert all(a.shape == (T, H) for a in vis.states[0].values())
    assert vis.features.shape == (F, T)
    assert all(r.shape == (F, H) for r in vis.correlation[0].values())
    assert vis.logits.shape == (T, V)
    assert vis.top_ids.shape == vis.top_probs.shape == (T, 5)
    assert vis.next_prob.shape == (T,) and np.isnan(vis.next_prob[-1]) and np.isfinite(vis.next_prob[:-1]).all()


def test_lstm_states_equal_stepping_the_cell_by_hand(vis, checkpoint, sample_text):
    """c_t and h_t recomputed independently in float64 with CELLS['lstm'].step_forward, one character at a time
    (zx = Wx[id] + b: the one-hot product). The page's numbers come from the float32 checkpoint weights, so they
    agree to float32 rounding accumulated over ~150 steps: atol 1e-5 on values of order 1."""
    p = {k[3:]: v.astype(np.float64) for k, v in checkpoint.params.items() if k.startswith("l0.")}
    H = p["Wh"].shape[0]
    state = (np.zeros((1, H)), np.zeros((1, H)))
    hs, cs = [], []
    for i in checkpoint.tokenizer.encode(sample_text):
        state, _ = CELLS["lstm"].step_forward((p["Wx"][i] + p["b"])[None, :], state, p)
        hs.append(state[0][0])
        cs.append(state[1][0])
    np.testing.assert_allclose(vis.states[0]["h"], np.array(hs), atol=1e-5, rtol=0)
    np.testing.assert_allclose(vis.states[0]["c"], np.array(cs), atol=1e-5, rtol=0)
    assert np.abs(np.array(cs)).max() > 0.05  # the trained cell state is not trivially zero


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_every_layer_and_the_logits_equal_model_forward(cell):
    """Two stacked layers: each layer's h is what model.forward feeds the layer above (its cache), the top one is
    top_hidden, and the logits are forward's. Same float64 operations in the same order: rtol 1e-12."""
    tokenizer = CharTokenizer.fit("abc de\n")
    config = charmodel.ModelConfig(vocab_size=tokenizer.vocab_size, cell=cell, hidden_size=6, num_layers=2)
    params = charmodel.init_params(config, np.random.default_rng(1), dtype=np.float64)
    params["l0.b"] += np.random.default_rng(2).normal(0, 0.5, params["l0.b"].shape)  # nonzero biases
    ids = tokenizer.encode("abc de\nedcba a")
    layers, logits = layer_states(params, config, ids)
    zero = charmodel.zero_state(config, 1, np.float64)
    ref_logits, ref_state, cache = charmodel.forward(params, config, ids[:, None], zero)
    np.testing.assert_allclose(layers[0]["h"], cache.layer_inputs[1][:, 0], rtol=1e-12)
    np.testing.assert_allclose(layers[1]["h"], cache.top_hidden[:, 0], rtol=1e-12)
    np.testing.assert_allclose(logits, ref_logits[:, 0], rtol=1e-12)
    assert set(layers[0]) == ({"h", "c"} if cell == "lstm" else {"h"})
    for layer, final in enumerate(ref_state):                     # the last step's state is forward's final state
        for k, name in enumerate(("h", "c")[:len(final)]):
            np.testing.assert_allclose(layers[layer][name][-1], final[k][0], rtol=1e-12)


def test_top5_predictions_are_the_softmax_sorted(vis, checkpoint, sample_text):
    ids = checkpoint.tokenizer.encode(sample_text)
    logits, _, _ = charmodel.forward(checkpoint.params, checkpoint.model_config, ids[:, None],
                                     charmodel.zero_state(checkpoint.model_config, 1))
    p = softmax(logits[:, 0].astype(np.float64))                  # (T, V)
    np.testing.assert_allclose(vis.top_probs, np.take_along_axis(p, vis.top_ids, axis=1), rtol=1e-6)
    assert (np.diff(vis.top_probs, axis=1) <= 0).all()            # most likely first
    assert (vis.top_probs.sum(axis=1) <= 1 + 1e-9).all()
    fifth = vis.top_probs[:, -1:]
    rest = p.copy()
    np.put_along_axis(rest, vis.top_ids, -1.0, axis=1)
    assert (rest <= fifth + 1e-12).all()                          # nothing outside the top 5 beats the 5th
    np.testing.assert_allclose(vis.next_prob[:-1], p[np.arange(len(ids) - 1), ids[1:]], rtol=1e-6)


def test_top_predictions_with_a_vocabulary_smaller_than_five():
    ids, probs = top_predictions(np.array([[0.0, 2.0, 1.0]]))
    assert ids.tolist() == [[1, 2, 0]] and probs.sum() == pytest.approx(1.0)


# --- features and scores -------------------------------------------------------------------------------


def test_features_of_a_known_string():
    """Each feature describes the position after reading the character: the opening quote/bracket is inside,
    the closing one outside."""
    text = 'a "b(c)" D.\nxy'
    f = text_features(text)
    row = lambda name: f[FEATURE_INDEX[name]].tolist()  # noqa: E731
    assert row("in_quotes") == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert row("in_brackets") == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert row("newline") == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert row("line_position") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1]
    assert row("punctuation") == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    assert row("space") == [0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert row("word_position") == [1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1, 2]
    assert row("uppercase") == [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]


def test_correlations_equal_numpy_corrcoef():
    rng = np.random.default_rng(0)
    features, activations = rng.normal(size=(3, 50)), rng.normal(size=(50, 4))
    expected = np.corrcoef(features, activations.T)[:3, 3:]       # (F, H) block of the joint matrix
    np.testing.assert_allclose(correlations(features, activations), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_unit_that_is_the_quote_feature_ranks_first(sign):
    """Unit 5's activation is an affine copy of "inside quotes" (switched on or, with sign -1, off inside): its
    score is 1, it heads that feature's list and the overall unit order; the noise units score well below."""
    text = 'He said "yes, I will" and (then) left. "No," she said.\nSo "that" was it.' * 3
    features = text_features(text)
    rng = np.random.default_rng(0)
    activations = rng.normal(0, 0.3, size=(len(text), 8))
    activations[:, 5] = sign * 0.8 * features[FEATURE_INDEX["in_quotes"]] - 0.1
    r = correlations(features, activations)
    quotes = FEATURE_INDEX["in_quotes"]
    assert abs(r[quotes, 5]) == pytest.approx(1.0) and np.sign(r[quotes, 5]) == sign
    assert top_units(r)[quotes, 0] == 5
    assert rank_units(r)[0] == 5
    assert np.abs(np.delete(r[quotes], 5)).max() < 0.5


def test_scores_are_in_the_unit_interval_and_absent_features_score_zero(checkpoint):
    text = "the cat sat on the mat.\nthe dog ran far away.\n"              # no quotes, brackets or capitals
    vis = visualization_data(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, text)
    for r in vis.correlation[0].values():
        assert np.isfinite(r).all() and (np.abs(r) <= 1).all()
        for absent in ("in_quotes", "in_brackets", "uppercase"):
            assert (r[FEATURE_INDEX[absent]] == 0).all()
        assert np.abs(r[FEATURE_INDEX["space"]]).max() > 0


def test_a_constant_unit_scores_zero():
    features = text_features('ab "cd" e\nf')
    activations = np.ones((len('ab "cd" e\nf'), 2))
    assert (correlations(features, activations) == 0).all()


# --- text input, truncation, vocabulary ----------------------------------------------------------------


def test_text_argument_is_a_file_or_the_text_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_bytes(b"\xef\xbb\xbfone\r\ntwo\n")
    assert read_text_argument("in.txt") == "one\ntwo\n"             # BOM dropped, CRLF -> LF
    assert read_text_argument(str(tmp_path / "in.txt")) == "one\ntwo\n"
    assert read_text_argument("hello there") == "hello there"       # no such file: the text itself
    (tmp_path / "adir").mkdir()
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    for value, message in [("missing.txt", "not found"), ("some/where", "not found"), ("adir", "directory"),
                           ("empty.txt", "empty"), ("", "empty"), ("latin1.txt", "not valid UTF-8")]:
        with pytest.raises(RnnlabError, match=message):
            read_text_argument(value)


def test_long_text_is_cut_to_max_chars(checkpoint, corpus):
    with open(corpus, encoding="utf-8") as f:
        text = f.read()
    vis = visualization_data(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, text, max_chars=100)
    assert vis.text == text[:100] and vis.total_chars == len(text) and vis.states[0]["c"].shape == (100, 8)


def test_characters_outside_the_vocabulary_are_named(checkpoint):
    with pytest.raises(RnnlabError, match=r"2 character\(s\) outside the checkpoint's vocabulary: '#', 'Z'"):
        visualization_data(checkpoint.params, checkpoint.model_config, checkpoint.tokenizer, "the Z#")


# --- the page ------------------------------------------------------------------------------------------


def embedded_json(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="rnnlab-data">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_page_embeds_the_data_safely_and_loads_nothing(vis, sample_text):
    """The text holds '</script>', '<b>' and '&': escaped, they cannot end the data element early, and the JSON
    still decodes to the exact text. No URL, link, @import or external src: the page works offline."""
    page = render_html(vis, title='<b>"mine"</b>')
    assert "</script>" in sample_text
    assert page.count("</script>") == 3          # the data element's, the preamble's (data.html), the code's: no more
    assert "<b>x</b>" not in page and "<!--" not in page
    data = embedded_json(page)
    assert data["text"] == sample_text
    assert data["states"] == ["c", "h"] and data["initial"]["state"] == "c"
    assert data["initial"]["unit"] == rank_units(vis.correlation[0]["c"])[0]
    assert len(data["activations"][0]["c"]) == 8 and len(data["activations"][0]["c"][0]) == len(sample_text)
    assert "<title>&lt;b&gt;&quot;mine&quot;&lt;/b&gt;</title>" in page
    for external in ("http://", "https://", "<link", "@import", "url(", " src=", "//cdn"):
        assert external not in page, external


def test_layer_choice_and_single_state_cells():
    tokenizer = CharTokenizer.fit("abc d\n")
    config = charmodel.ModelConfig(vocab_size=tokenizer.vocab_size, cell="gru", hidden_size=4, num_layers=2)
    params = charmodel.init_params(config, np.random.default_rng(0))
    vis = visualization_data(params, config, tokenizer, "abc d\ndcba")
    assert page_data(vis)["initial"]["layer"] == 1                # default: the top layer
    assert page_data(vis, layer=0)["initial"]["layer"] == 0
    assert page_data(vis)["states"] == ["h"]
    with pytest.raises(RnnlabError, match="--layer must be between 0 and 1"):
        page_data(vis, layer=2)


def test_write_html_replaces_atomically_only_a_page_rnnlab_wrote(tmp_path):
    out = tmp_path / "page.html"
    old = '<meta name="generator" content="rnnlab">old'
    out.write_text(old)
    write_html(out, "<!DOCTYPE html>new")
    assert out.read_text() == "<!DOCTYPE html>new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]  # no temporary file left behind
    with pytest.raises(RnnlabError, match="is not a page written by rnnlab"):   # now it is not rnnlab's page
        write_html(out, "x")
    assert out.read_text() == "<!DOCTYPE html>new"
    write_html(out, "x", overwrite=True)
    assert out.read_text() == "x"
    with pytest.raises(RnnlabError, match="does not exist"):
        write_html(tmp_path / "nowhere" / "page.html", "x")


# --- the command line ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_writes_the_page(checkpoint_dir, corpus, tmp_path):
    out = tmp_path / "page.html"
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "visualize", "--checkpoint", checkpoint_dir,
                             "--text", corpus, "--out", str(out), "--max_chars", "500"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"rnnlab: wrote {out} (500 of ") and result.stderr == ""
    assert len(embedded_json(out.read_text(encoding="utf-8"))["text"]) == 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]


BAD_INPUTS = {
    "missing checkpoint": (["--checkpoint", "{tmp}/nope"], "not found"),
    "unknown characters": (["--text", "the Z#"], "outside the checkpoint's vocabulary: '#', 'Z'"),
    "empty text": (["--text", ""], "--text is empty"),
    "empty file": (["--text", "{tmp}/empty.txt"], "is empty"),
    "missing text file": (["--text", "{tmp}/missing.txt"], "not found"),
    "layer out of range": (["--layer", "3"], "--layer must be between 0 and 0"),
    "no characters": (["--max_chars", "0"], "--max_chars must be > 0"),
    "missing output directory": (["--out", "{tmp}/no/page.html"], "does not exist"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_cli_bad_input_is_one_line_and_exit_2(case, checkpoint_dir, tmp_path, capsys):
    (tmp_path / "empty.txt").write_bytes(b"")
    args = {"--checkpoint": checkpoint_dir, "--text": "the cat", "--out": str(tmp_path / "page.html")}
    override, message = BAD_INPUTS[case]
    pairs = zip(override[::2], override[1::2], strict=True)
    args.update({flag: value.replace("{tmp}", str(tmp_path)) for flag, value in pairs})
    code = main(["visualize", *[item for pair in args.items() for item in pair]])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("rnnlab: error: ") and message in err, err
    assert not (tmp_path / "page.html").exists()


@pytest.mark.slow
def test_cli_error_in_a_subprocess_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "visualize", "--checkpoint", str(tmp_path / "x"),
                             "--text", "a", "--out", str(tmp_path / "p.html")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == "" and len(result.stderr.splitlines()) == 1


# --- in a real browser ---------------------------------------------------------------------------------

BACKGROUNDS = "return Array.from(document.querySelectorAll('#text span'), s => getComputedStyle(s).backgroundColor);"


@needs_browser
def test_page_in_headless_chromium(vis, tmp_path):
    """Open the file:// page: it runs without loading anything, colours every character, recolours when another
    unit is chosen (in the selector or by clicking a feature's unit), shows the top-5 predictions of a clicked
    character, and renders to a non-blank screenshot."""
    page = write_html(tmp_path / "page.html", render_html(vis, "browser test"))
    with open_page(page, tmp_path) as browser:
        assert browser.run("return window.rnnlabReady === true;"), "the page's script did not finish"
        assert browser.run("return performance.getEntriesByType('resource').length;") == 0  # nothing fetched

        before = browser.run(BACKGROUNDS)
        assert len(before) == len(vis.text)
        white = {"rgb(255, 255, 255)", "rgba(0, 0, 0, 0)"}
        assert sum(colour not in white for colour in before) > len(before) // 2

        first_unit = browser.run("return +document.getElementById('unit').value;")
        browser.click("#unit option:nth-child(2)")                  # the second-ranked unit
        assert browser.run("return +document.getElementById('unit').value;") != first_unit
        after = browser.run(BACKGROUNDS)
        assert sum(a != b for a, b in zip(before, after, strict=True)) > len(before) // 4

        other = browser.run("return +document.querySelector('button.unit:not(.active)').dataset.unit;")
        browser.click(f'button.unit[data-unit="{other}"]')           # a feature's top unit
        assert browser.run("return +document.getElementById('unit').value;") == other

        cell_state = browser.run(BACKGROUNDS)
        browser.click('#state option[value="h"]')                   # the LSTM's h instead of tanh(c)
        assert browser.run("return document.getElementById('legend-low').textContent;").startswith("h =")
        assert browser.run(BACKGROUNDS) != cell_state

        browser.click('#text span[data-t="3"]')
        probs = browser.run("return Array.from(document.querySelectorAll('#predictions tr'), "
                            "r => +r.cells[2].textContent);")
        np.testing.assert_allclose(probs, vis.top_probs[3], atol=6e-4)  # shown with 3 decimals

        png = base64.b64decode(browser.call("GET", f"{browser.session}/screenshot"))
        (tmp_path / "page.png").write_bytes(png)
        width, height, distinct = png_summary(png)
        assert width >= 800 and height >= 600 and len(png) > 20_000 and distinct > 32
