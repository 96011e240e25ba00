"""The package's layering, as each subpackage's `__init__` docstring declares it, and module size.

Every module under src/speechllm is parsed with `ast`; every import of a `speechllm` name (at
module level, inside functions, under `TYPE_CHECKING`) must be from the module's own package or
from one that `ALLOWED` lists for it. `ALLOWED` is the "May import:" paragraph of each
`__init__` docstring, and a test keeps the two in step.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "speechllm"

MAX_LINES = 420

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "labels": set(),
    "hub": {"errors"},
    "config": {"errors", "data.audio"},
    "data": {"errors", "labels"},
    "model": {
        "errors",
        "labels",
        "config",
        "hub",
        "data.audio",
        "data.normalize",
        "data.manifest",
    },
    "annotate": {"errors", "labels", "hub", "data", "model.prompts"},
    "evaluation": {"errors", "labels", "config", "hub", "data", "model", "annotate"},
    "bench": {"errors", "labels", "hub", "data", "evaluation"},
    "inference": {"errors", "labels", "config", "hub", "data", "model", "evaluation"},
    "training": {
        "errors",
        "labels",
        "config",
        "hub",
        "data",
        "model",
        "evaluation",
        "inference",
    },
    "serving": {"errors", "labels", "config", "hub", "data", "model", "inference"},
}
"""Unit (a subpackage or top-level module of speechllm) -> what it may import besides itself:
a unit, or a module inside one (`data.audio`: that module only)."""

TOP = {"demo", "cli"}
"""On top of everything: `demo` may import any unit but `cli`; `cli` any unit."""

ROOT_NAMES = {"speechllm", "speechllm.__version__"}
"""The package itself (its version string) imports nothing and may be imported by anyone."""


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(name: str) -> str:
    """`speechllm.data.audio` -> `data`; `speechllm` -> ``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def imported_names(path: Path, src: Path = SRC) -> list[tuple[int, str]]:
    """(line, dotted name) of every speechllm import in the file; `from a import b` gives `a.b`."""
    name = module_name(path, src)
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return [(line, n) for line, n in out if n == "speechllm" or n.startswith("speechllm.")]


def allowed(unit: str, target: str) -> bool:
    """Whether a module of `unit` may import `target` (a dotted name under speechllm)."""
    target_unit = unit_of(target)
    if target in ROOT_NAMES or target_unit == unit:
        return True
    if unit == "cli":
        return True
    if unit == "demo":
        return target_unit != "cli"
    rest = target.removeprefix("speechllm.")
    return any(rest == a or rest.startswith(a + ".") for a in ALLOWED.get(unit, set()))


def violations() -> list[str]:
    found = []
    for path in modules():
        unit = unit_of(module_name(path))
        for line, target in imported_names(path):
            if not allowed(unit, target):
                found.append(f"{path.relative_to(SRC)}:{line}: {unit} may not import {target}")
    return found


def test_every_import_keeps_to_the_declared_layering():
    assert violations() == []


def test_every_unit_is_in_the_table():
    units = {unit_of(module_name(p)) for p in modules()} - {""}
    assert units == set(ALLOWED) | TOP


def test_the_layering_has_no_cycle():
    # Depth-first over the unit graph (a module entry counts as its unit).
    graph = {u: {a.split(".")[0] for a in deps} for u, deps in ALLOWED.items()}
    done: set[str] = set()

    def visit(unit: str, path: tuple[str, ...]) -> None:
        assert unit not in path, f"cycle: {' -> '.join((*path, unit))}"
        if unit not in done:
            for dep in graph[unit]:
                visit(dep, (*path, unit))
            done.add(unit)

    for unit in graph:
        visit(unit, ())


@pytest.mark.parametrize("unit", sorted(u for u in ALLOWED if (PACKAGE / u).is_dir()))
def test_init_docstring_states_the_same_rule(unit):
    """The "May import:" paragraph names exactly the table's entries, as `speechllm.X`."""
    doc = ast.get_docstring(ast.parse((PACKAGE / unit / "__init__.py").read_text())) or ""
    assert "May import:" in doc, f"speechllm.{unit}'s docstring states no import rule"
    rule = doc.split("May import:", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`speechllm\.([a-z_.]+)`", rule))
    assert named == ALLOWED[unit]


@pytest.mark.parametrize(
    "unit", sorted(u for u in ALLOWED | dict.fromkeys(TOP) if (PACKAGE / u).is_dir())
)
def test_init_docstring_lists_its_modules(unit):
    doc = ast.get_docstring(ast.parse((PACKAGE / unit / "__init__.py").read_text())) or ""
    for path in sorted((PACKAGE / unit).iterdir()):
        if path.suffix == ".py" and path.name != "__init__.py":
            assert f"`{path.stem}`" in doc, f"speechllm.{unit} does not list {path.stem}"
        elif (path / "__init__.py").is_file():
            assert f"`{path.name}/`" in doc, f"speechllm.{unit} does not list {path.name}/"


def test_no_module_is_over_the_size_limit():
    long = {
        str(p.relative_to(SRC)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_checker_sees_imports_inside_functions(tmp_path):
    # A check that cannot fail is no check: an upward import inside a function is caught.
    bad = tmp_path / "speechllm" / "data" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from speechllm.evaluation.slue import wer\n    return wer\n")
    names = [n for _, n in imported_names(bad, tmp_path)]
    assert names == ["speechllm.evaluation.slue.wer"]
    assert not allowed("data", names[0])
    assert allowed("bench", names[0]) and allowed("data", "speechllm.labels.SENTIMENTS")
    assert not allowed("model", "speechllm.data.tts") and allowed("model", "speechllm.data.audio")
