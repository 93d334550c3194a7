"""The architecture's rules, checked on the source: imports run one way (the layers contract in
.importlinter, which `make test` also runs as lint-imports), every module is in a layer, each
domain word is spelled once (core/enums.py) and every Decimal conversion goes through
core.decimals.to_decimal."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from bench.import_graph import APPS, ROOT, build_graph, cross_app_cycles, modules_outside_layers
from core.enums import (
    ExecutionStatus,
    ExecutionStrategy,
    IntentStatus,
    Mode,
    OrderStatus,
    PositionSide,
    PositionStatus,
    Side,
)

# The string values of the domain words: outside core, a literal with one of these values
# stands for the enum member and must be written as the member.
DOMAIN_VALUES = {m.value for enum in (Side, PositionSide, Mode, ExecutionStrategy, OrderStatus, ExecutionStatus,
                                      IntentStatus, PositionStatus) for m in enum}


@pytest.fixture(scope="module")
def graph():
    return build_graph()


def _sources() -> list[Path]:
    files = []
    for app in APPS:
        if app == "core":
            continue
        for path in sorted((ROOT / app).rglob("*.py")):
            if not {"tests", "migrations"} & set(path.relative_to(ROOT).parts):
                files.append(path)
    return files


def _non_code_strings(tree: ast.AST) -> set[int]:
    """Docstrings and the literal parts of f-strings: prose, not values."""
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
    return skip


def domain_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _non_code_strings(tree)
    return [f"{path.relative_to(ROOT)}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in DOMAIN_VALUES
            and id(n) not in skip]


def decimal_conversions(path: Path) -> list[str]:
    """Decimal(...) of anything but a constant: conversions belong to core.decimals."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{path.relative_to(ROOT)}:{n.lineno}" for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Decimal"
            and not (len(n.args) == 1 and isinstance(n.args[0], ast.Constant))]


def test_there_is_no_import_cycle_between_apps(graph):
    cycles = cross_app_cycles(graph)
    print(f"import cycles between apps: {len(cycles)}")
    assert cycles == [], "\n".join(", ".join(sorted(c)) for c in cycles)


def test_every_module_belongs_to_a_layer(graph):
    assert modules_outside_layers(graph) == [], "add each module to a layer in .importlinter"


def test_the_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_checks_see_what_they_look_for():
    """The scanners find a planted literal and a planted conversion, and pass over prose."""
    target = ROOT / "var" / "planted_literal_check.py"
    target.parent.mkdir(exist_ok=True)
    target.write_text('"""doc: buy"""\nside = "buy"\nmsg = f"sell {side}"\nx = Decimal(str(1))\ny = Decimal("1")\n')
    try:
        assert domain_literals(target) == ["var/planted_literal_check.py:2: 'buy'"]
        assert decimal_conversions(target) == ["var/planted_literal_check.py:4"]
    finally:
        target.unlink()


def test_no_string_literal_stands_for_a_domain_word():
    found = [hit for path in _sources() for hit in domain_literals(path)]
    assert found == [], "use the core.enums member instead:\n" + "\n".join(found)


def test_every_decimal_conversion_goes_through_core():
    found = [hit for path in _sources() for hit in decimal_conversions(path)]
    assert found == [], "use core.decimals.to_decimal:\n" + "\n".join(found)
