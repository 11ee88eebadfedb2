"""The docs' links stay true: relative links resolve, images exist, and code links still point at the code.

One rule for every link into code with a line anchor, e.g.

    [`dz = dh * tanh_grad(h)`](../src/rnnlab/cells.py#L87)

the link text is a code span, and that text (spaces ignored) must occur on the anchored line or within
``NEARBY`` lines of it. When code moves, the fragment is no longer found there and the test names the link,
the line it expected and where the fragment is now. Offline, no rendering: plain text checks only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
NEARBY = 3  # lines either side of the anchor that may hold the fragment (an edit just above may shift it)

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
# [text](target) or ![alt](target); the text may hold code spans (with brackets inside) and balanced [...]
LINK = re.compile(r"(!?)\[((?:`[^`]*`|[^\[\]`]|\[[^\]]*\])*)\]\(([^()\s]+)\)")
CODE_SPAN = re.compile(r"`([^`]+)`")
LINE_ANCHOR = re.compile(r"^L(\d+)(?:-L(\d+))?$")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def links(doc: Path) -> list[tuple[bool, str, str]]:
    """(is_image, text, target) of every relative link in ``doc``, outside fenced code blocks."""
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    return [(bang == "!", label, target) for bang, label, target in LINK.findall(text)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # skip http:, https:, mailto: ...


def resolve(doc: Path, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    return ((doc.parent / path).resolve() if path else doc), anchor


def github_slugs(markdown: Path) -> set[str]:
    """The anchors GitHub generates for the headings: lower case, punctuation dropped, spaces -> '-'."""
    seen: dict[str, int] = {}
    slugs = set()
    for heading in HEADING.findall(FENCE.sub("", markdown.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        slugs.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return slugs


ALL_LINKS = [(doc, *link) for doc in DOCS if doc.exists() for link in links(doc)]
CODE_LINKS = [(doc, text, target) for doc, _, text, target in ALL_LINKS if LINE_ANCHOR.match(target.partition("#")[2])]


def link_id(item) -> str:
    return f"{item[0].name}:{item[-1]}"


def test_the_docs_exist_and_link_into_the_code():
    names = {doc.name for doc in DOCS if doc.exists()}
    assert {"activations.md", "optimizers.md", "bptt.md", "README.md"} <= names
    assert len(CODE_LINKS) > 50, "the docs should link their equations to the code"


@pytest.mark.parametrize("doc,is_image,text,target", ALL_LINKS, ids=[f"{d.name}:{t}" for d, _, _, t in ALL_LINKS])
def test_relative_link_resolves(doc, is_image, text, target):
    path, anchor = resolve(doc, target)
    assert path.exists(), f"{doc.name}: [{text}]({target}) -> {path} does not exist"
    if is_image:
        assert path.is_file() and path.stat().st_size > 0, f"{doc.name}: image {target} is empty"
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{doc.name}: {target} is not a PNG"
    if anchor and path.suffix == ".md":
        assert anchor in github_slugs(path), f"{doc.name}: [{text}]({target}): no heading #{anchor} in {path.name}"


@pytest.mark.parametrize("doc,text,target", CODE_LINKS, ids=[link_id(c) for c in CODE_LINKS])
def test_code_link_points_at_its_code(doc, text, target):
    path, anchor = resolve(doc, target)
    first, last = LINE_ANCHOR.match(anchor).groups()
    first, last = int(first), int(last or first)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert last <= len(lines), f"{doc.name}: {target} is past the end of {path.name} ({len(lines)} lines)"
    fragments = CODE_SPAN.findall(text)
    assert fragments, f"{doc.name}: [{text}]({target}): a link to a code line must have a `code` text to check"
    squash = lambda s: re.sub(r"\s+", "", s)  # noqa: E731 -- spacing is not what the check is about
    window = [squash(line) for line in lines[max(first - 1 - NEARBY, 0):last + NEARBY]]
    for fragment in fragments:
        if not any(squash(fragment) in line for line in window):
            now = [n for n, line in enumerate(lines, 1) if squash(fragment) in squash(line)]
            pytest.fail(f"{doc.name}: `{fragment}` is not within {NEARBY} lines of {target}; "
                        f"{path.name} has it on line(s) {now or 'none'}")
