"""The wings' import rules (issue 22): each package's docstring states what it may import; this test reads
every import of every module (top level and inside functions) and fails on one that breaks the rule."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rnnlab

PACKAGE = Path(rnnlab.__file__).parent
EDGES = {"errors", "files", "schema", "memory"}
# wing -> the wings (and top-level modules) its modules may import, besides itself
ALLOWED = {
    "errors": set(),
    "memory": {"errors"},
    "files": {"errors", "memory"},
    "schema": {"errors"},
    "nn": {"errors"},
    "data": {"nn", *EDGES},
    "generate": {"nn", "data", "errors", "memory"},
    "training": {"nn", "data", "generate", "frameworks", *EDGES},
    "frameworks": {"nn", "data", "training", "errors", "memory"},
    "tools": {"nn", "data", "generate", "training", "frameworks", *EDGES},
    "cli": {"nn", "data", "generate", "training", "frameworks", "tools", *EDGES},
    "__main__": {"cli"},
    "__init__": {"nn", "data", "training", "errors"},
    "corpora": set(),                          # data and templates: no code
    "templates": set(),
}


def wing_of(path: Path) -> str:
    """src/rnnlab/nn/cells.py -> nn; src/rnnlab/cli.py -> cli; src/rnnlab/__init__.py -> __init__."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def imported_wings(path: Path) -> list[tuple[int, str]]:
    """(line, wing) of every rnnlab module ``path`` imports, however it is written."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(("rnnlab", *path.relative_to(PACKAGE).parts[:-1]))
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [source] if source != "rnnlab" else [f"rnnlab.{a.name}" for a in node.names]
        for target in targets:
            parts = target.split(".")
            if parts[0] == "rnnlab" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_import_follows_its_wings_rule(path):
    wing = wing_of(path)
    allowed = ALLOWED[wing] | {wing}
    bad = [f"line {line}: imports rnnlab.{target}" for line, target in imported_wings(path) if target not in allowed]
    assert not bad, f"{path.relative_to(PACKAGE)} ({wing}) may import only {sorted(allowed)}: {bad}"


def test_every_wing_states_its_rule_in_its_docstring():
    for wing in ("nn", "data", "generate", "training", "frameworks", "tools"):
        doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert "Import rule" in doc, wing


def test_nothing_but_the_cli_and_main_imports_the_cli_or_a_tool():
    for path in MODULES:
        wing = wing_of(path)
        for line, target in imported_wings(path):
            if target == "cli":
                assert wing == "__main__", f"{path}: line {line}"
            if target == "tools":
                assert wing in ("cli", "tools"), f"{path}: line {line}"


def test_the_shipped_texts_are_not_in_a_code_folder():
    assert not list((PACKAGE / "data").glob("*.txt"))
    assert (PACKAGE / "corpora" / "dinos.txt").is_file()


def modules_loaded_by(module: str) -> set[str]:
    """The rnnlab modules that importing ``module`` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('rnnlab')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(done.stdout.split())


def test_reading_a_checkpoint_loads_neither_the_translator_nor_the_trainer():
    """checkpoint.py learns what it needs of a task from its kind (kinds.py): the decoding of translations,
    the tasks, the engines and the trainer stay unloaded."""
    loaded = modules_loaded_by("rnnlab.training.checkpoint")
    assert not loaded & {"rnnlab.generate.translate", "rnnlab.training.tasks", "rnnlab.training.engines",
                         "rnnlab.training.trainer", "rnnlab.training.parallel"}, sorted(loaded)


def test_the_settings_do_not_load_the_engines_or_the_translator():
    loaded = modules_loaded_by("rnnlab.training.config")
    assert not loaded & {"rnnlab.training.engines", "rnnlab.training.parallel", "rnnlab.generate.translate"}, \
        sorted(loaded)
