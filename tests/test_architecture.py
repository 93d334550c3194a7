"""The architecture's rules, checked on the source: imports run one way (the layers contract in
.importlinter, which `make test` also runs as lint-imports), every module is in a layer, each
domain word is spelled once (core/enums.py) and every Decimal conversion goes through
core.decimals.to_decimal."""
from __future__ import annotations

import ast
import subprocess
import sys
from enum import StrEnum
from pathlib import Path

import pytest

from bench.import_graph import APPS, ROOT, build_graph, cross_app_cycles, modules_outside_layers
from core import enums
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


_FIELD_WORDS = ("side", "mode", "status", "strategy", "direction", "state", "type", "default", "choices")


def _names_a_domain_field(name: str | None) -> bool:
    return bool(name) and any(w in name.lower() for w in _FIELD_WORDS)


def _constants(node: ast.AST | None):
    """The string constants a value position holds: itself, a collection's elements, both
    branches of a conditional."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for elt in node.elts:
            yield from _constants(elt)
    elif isinstance(node, ast.IfExp):
        yield from _constants(node.body)
        yield from _constants(node.orelse)
    elif isinstance(node, ast.BoolOp):
        for v in node.values:
            yield from _constants(v)


def _target_name(target: ast.AST) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


def domain_literals(path: Path) -> list[str]:
    """String literals with a domain word's value where they stand for the word: compared with,
    used as a key or a Literal type, returned, or given to a field named side/mode/status/
    strategy/direction/state/type (an assignment, a keyword, a dict entry, a parameter default),
    a field's `default=` or `choices=`, or a constant named after it (BUY = "buy"). Prose
    (docstrings, messages) and payload keys are not values."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _non_code_strings(tree)
    # Members of another vocabulary's enum (the outbox's ConsumeOutcome.FAILED) may share a
    # value; an enum named like a core one is caught by test_no_app_redefines_a_core_enum.
    members = {id(stmt) for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef) for stmt in cls.body}
    found: list[ast.Constant] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                found.extend(_constants(operand))
        elif isinstance(node, ast.Subscript):
            found.extend(_constants(node.slice))
        elif isinstance(node, ast.Return) or isinstance(node, ast.keyword) and _names_a_domain_field(node.arg):
            found.extend(_constants(node.value))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_names_a_domain_field(_target_name(t)) for t in targets):
                found.extend(_constants(node.value))
            for t in (targets if id(node) not in members else []):  # BUY = "buy": the word again
                names = t.elts if isinstance(t, ast.Tuple) else [t]
                values = node.value.elts if isinstance(node.value, ast.Tuple) and isinstance(t, ast.Tuple) \
                    else [node.value.elts[0] if isinstance(node.value, ast.Tuple) and node.value.elts else node.value]
                for name, value in zip(names, values, strict=False):
                    if isinstance(value, ast.Constant) and isinstance(value.value, str) \
                            and (_target_name(name) or "").upper() == value.value.upper():
                        found.append(value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str) and _names_a_domain_field(key.value):
                    found.extend(_constants(value))
        elif isinstance(node, ast.arguments):
            params = [*node.posonlyargs, *node.args]
            for arg, default in zip(params[len(params) - len(node.defaults):], node.defaults, strict=True):
                if _names_a_domain_field(arg.arg):
                    found.extend(_constants(default))
            for arg, default in zip(node.kwonlyargs, node.kw_defaults, strict=True):
                if default is not None and _names_a_domain_field(arg.arg):
                    found.extend(_constants(default))
    return sorted({f"{path.relative_to(ROOT)}:{n.lineno}: {n.value!r}" for n in found
                   if n.value in DOMAIN_VALUES and id(n) not in skip})


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
    target.write_text('"""doc: buy"""\nside = "buy"\nmsg = f"sell {side}"\nif side == "sell":\n    pass\n'
                      'x = Decimal(str(1))\ny = Decimal("1")\nevent = {"side": "long", "filled": 1}\n')
    try:
        assert domain_literals(target) == ["var/planted_literal_check.py:2: 'buy'",
                                           "var/planted_literal_check.py:4: 'sell'",
                                           "var/planted_literal_check.py:8: 'long'"]
        assert decimal_conversions(target) == ["var/planted_literal_check.py:6"]
    finally:
        target.unlink()


def test_no_app_redefines_a_core_enum():
    core_names = {name for name, obj in vars(enums).items() if isinstance(obj, type) and issubclass(obj, StrEnum)
                  and obj.__module__ == enums.__name__}
    found = [f"{path.relative_to(ROOT)}:{node.lineno}: class {node.name}" for path in _sources()
             for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)
             and node.name in core_names]
    assert found == [], "import it from core.enums:\n" + "\n".join(found)


def test_no_string_literal_stands_for_a_domain_word():
    found = [hit for path in _sources() for hit in domain_literals(path)]
    assert found == [], "use the core.enums member instead:\n" + "\n".join(found)


def test_every_decimal_conversion_goes_through_core():
    found = [hit for path in _sources() for hit in decimal_conversions(path)]
    assert found == [], "use core.decimals.to_decimal:\n" + "\n".join(found)
