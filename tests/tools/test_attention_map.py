"""Attention heatmaps (rnnlab.tools.attention_map): the page's data is the translator's weights, the page is
self-contained and safe for any text, it works in headless Chromium (hover shows a cell's weight), the PNG is
written, and the text form lines up."""

import json
import re

import numpy as np
import pytest

from browser import needs_browser, open_page, png_summary
from rnnlab.errors import RnnlabError
from rnnlab.generate.translate import Translation
from rnnlab.tools.attention_map import (
    attention_page_data,
    attention_text,
    render_attention_html,
    write_attention_html,
    write_attention_png,
)


def translation(source="9 may 18", output="2018-05-09", seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.random((len(output), len(source))) ** 4
    return Translation(source, output, -1.25, -0.11, weights / weights.sum(axis=1, keepdims=True), True)


def embedded_data(page):
    return json.loads(re.search(r'<script type="application/json" id="rnnlab-data">(.*?)</script>', page, re.S)[1])


def test_page_data_holds_every_weight_and_refuses_a_wrong_shape():
    t = translation()
    data = attention_page_data([t, translation("x", "1", 1)])
    [first, second] = data["translations"]
    assert (first["source"], first["output"], first["finished"]) == (t.source, t.output, True)
    np.testing.assert_allclose(first["weights"], t.attention, atol=5e-5)   # rounded to 4 decimals
    assert second["weights"] == [[1.0]]
    t.attention = t.attention[:, :-1]
    with pytest.raises(RnnlabError, match="expected \\(10, 8\\)"):
        attention_page_data([t])


def test_page_is_self_contained_and_safe_for_any_text(tmp_path):
    nasty = translation(source="</script><!--&", output="<b>")
    page = render_attention_html([nasty], title="<i>title</i>")
    assert "</script><!--" not in page.split('id="rnnlab-data">')[1].split("</script>")[0]
    assert embedded_data(page)["translations"][0]["source"] == "</script><!--&"
    assert "<title>&lt;i&gt;title&lt;/i&gt;</title>" in page
    for external in ("http://", "https://", "<link", "@import", "url(", " src=", "//cdn"):
        assert external not in page
    path = write_attention_html(tmp_path / "a.html", [nasty])
    assert path.read_text(encoding="utf-8") == render_attention_html([nasty])


def test_text_form_has_a_header_and_one_row_per_output_character():
    t = translation("ab c", "12")
    t.attention = np.array([[0.5, 0.25, 0.0, 0.25], [0.0, 0.0, 0.0, 1.0]])
    assert attention_text(t).splitlines() == ["      a    b    \u2423    c",
                                              "1  0.50 0.25 0.00 0.25",
                                              "2  0.00 0.00 0.00 1.00"]


def test_png_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    path = write_attention_png(tmp_path / "a.png", translation())
    width, height, distinct = png_summary(path.read_bytes())
    assert width > 200 and height > 200 and distinct > 32
    with pytest.raises(RnnlabError, match="nothing to draw"):
        write_attention_png(tmp_path / "b.png", translation("abc", ""))


@needs_browser
def test_page_in_headless_chromium(tmp_path):
    """The file:// page loads nothing, draws one coloured cell per (output, source) pair, shows a cell's
    weight on hover, and switches translation from the selector."""
    translations = [translation(), translation("3/11/99", "1999-11-03", 1)]
    page = write_attention_html(tmp_path / "a.html", translations)
    with open_page(page, tmp_path) as browser:
        assert browser.run("return window.rnnlabReady === true;"), "the page's script did not finish"
        assert browser.run("return performance.getEntriesByType('resource').length;") == 0
        cells = browser.run("return Array.from(document.querySelectorAll('#map td.w'), "
                            "c => getComputedStyle(c).backgroundColor);")
        assert len(cells) == 10 * 8 and len(set(cells)) > 20
        browser.run("document.querySelector('#map td.w[data-i=\"4\"][data-j=\"3\"]')"
                    ".dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));")
        shown = browser.run("return document.getElementById('weight').textContent;")
        assert shown == f"weight {translations[0].attention[4, 3]:.4f}"
        browser.click("#pick option:nth-child(2)")
        assert browser.run("return document.querySelectorAll('#map td.w').length;") == 10 * 7
