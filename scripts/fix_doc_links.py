"""Re-point the docs' code links after the code moved: ``python scripts/fix_doc_links.py [--check]``.

A code link looks like [`fragment`](../src/rnnlab/nn/cells.py#L87) (the rule tests/test_docs.py enforces).
For every link whose fragment is no longer near its line, this finds the fragment's new line (spaces ignored)
and rewrites the anchor; if the fragment now occurs on several lines, the one closest to the old anchor
wins; if it occurs nowhere, the link is reported for a human to fix.

A link to a file that no longer exists (the module moved to another wing, or was renamed) is re-aimed at
the module that now holds the fragment: the one of the same name if it has it, else the only module that
does; several candidates are reported for a human to choose.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[`([^`]+)`\]\(([^()\s#]+)#L(\d+)(?:-L(\d+))?\)")
NEARBY = 3


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def fix(doc: Path, check: bool) -> tuple[int, list[str]]:
    text, moved, lost = doc.read_text(encoding="utf-8"), 0, []

    def repoint(match):
        nonlocal moved
        fragment, target, start, end = match[1], match[2], int(match[3]), match[4]
        if not (doc.parent / target).resolve().is_file():
            found = moved_to(fragment, target)
            if found is None:
                lost.append(f"{doc.name}: {target} does not exist and `{fragment}` is in no single module")
                return match[0]
            target = os.path.relpath(found, doc.parent)
            moved += 1
        lines = (doc.parent / target).resolve().read_text(encoding="utf-8").splitlines()
        hits = [i + 1 for i, line in enumerate(lines) if squash(fragment) in squash(line)]
        if any(abs(h - start) <= NEARBY for h in hits):
            return f"[`{fragment}`]({target}#L{start}{f'-L{end}' if end else ''})"
        if not hits:                                       # the code moved to another module?
            found = moved_to(fragment, target)
            if found is None:
                lost.append(f"{doc.name}: `{fragment}` ({target}#L{start}) is not in the file any more")
                return match[0]
            target = os.path.relpath(found, doc.parent)
            lines = found.read_text(encoding="utf-8").splitlines()
            hits = [i + 1 for i, line in enumerate(lines) if squash(fragment) in squash(line)]
        new = min(hits, key=lambda h: abs(h - start))
        moved += 1
        span = f"-L{new + int(end) - start}" if end else ""
        return f"[`{fragment}`]({target}#L{new}{span})"

    fixed = LINK.sub(repoint, text)
    if moved and not check:
        doc.write_text(fixed, encoding="utf-8")
    return moved, lost


def moved_to(fragment: str, target: str) -> Path | None:
    """The module under src/ that now holds ``fragment``: the one named like ``target`` if it does, else the
    only one that does (None when none or several do)."""
    holders = [p for p in sorted((ROOT / "src").rglob("*.py"))
               if squash(fragment) in squash(p.read_text(encoding="utf-8"))]
    same_name = [p for p in holders if p.name == Path(target).name]
    if len(same_name) == 1:
        return same_name[0]
    return holders[0] if len(holders) == 1 else None


def main() -> int:
    check = "--check" in sys.argv[1:]
    total, lost = 0, []
    for doc in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        moved, missing = fix(doc, check)
        total, lost = total + moved, lost + missing
    print(f"{total} link(s) {'would be ' if check else ''}re-pointed")
    print("\n".join(lost))
    return 1 if lost or (check and total) else 0


if __name__ == "__main__":
    sys.exit(main())
