"""Finding a strategy: `load_strategy(spec, params)`.

`spec` is one of:
- a dotted module path, `mypkg.my_strategy` (the module must define exactly one Strategy
  subclass) or `mypkg.my_strategy:MyStrategy`;
- a file name, `my_strategy`: `<STRATEGIES_DIR>/my_strategy.py` (default `<repo>/strategies`),
  then the shipped strategies (`ai.strategies.examples.<name>`, and `ensemble`). A file in the
  strategies folder wins over a shipped one of the same name, so a user can copy an example
  and change it in place;
- a path to a `.py` file.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from ai.strategies.base import Strategy, StrategyError, UnknownStrategy

EXAMPLES_PACKAGE = "ai.strategies.examples"
SHIPPED = {"ensemble": "ai.strategies.ensemble"}
# Modules loaded from the strategies folder are registered under this prefix (a strategy file
# name is no importable package path).
USER_PREFIX = "qt_user_strategies"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def strategies_dir() -> Path:
    from django.conf import settings

    return Path(settings.STRATEGIES_DIR)


def _strategy_class(module: ModuleType, class_name: str | None, spec: str) -> type[Strategy]:
    if class_name is not None:
        cls = getattr(module, class_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
            raise UnknownStrategy(f"strategy {spec}: module {module.__name__} has no Strategy subclass "
                                  f"named {class_name}")
        return cls
    found = [c for _, c in inspect.getmembers(module, inspect.isclass)
             if issubclass(c, Strategy) and c is not Strategy and c.__module__ == module.__name__]
    if len(found) != 1:
        what = ", ".join(sorted(c.__name__ for c in found)) or "none"
        raise UnknownStrategy(f"strategy {spec}: module {module.__name__} must define exactly one Strategy "
                              f"subclass (found: {what}); name one as {module.__name__}:ClassName")
    return found[0]


def _import(module_name: str, spec: str) -> ModuleType | None:
    """The module, None when it does not exist; a module that fails while importing is an error."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "this module does not exist" means "look elsewhere"; a missing import inside
        # the strategy's own module is the strategy's error.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return None
        raise StrategyError(f"strategy {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise StrategyError(f"strategy {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}") from exc


def _import_file(path: Path, spec: str) -> ModuleType:
    module_name = f"{USER_PREFIX}.{path.stem}"
    file_spec = importlib.util.spec_from_file_location(module_name, path)
    if file_spec is None or file_spec.loader is None:
        raise StrategyError(f"strategy {spec}: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a class's module up here
    try:
        file_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise StrategyError(f"strategy {spec}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def find_strategy_class(spec: str, *, directory: Path | str | None = None) -> type[Strategy]:
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownStrategy("strategy: give a name, a dotted path (pkg.module or pkg.module:Class) or a .py file")
    spec = spec.strip()
    module_part, _, class_name = spec.partition(":")
    class_name = class_name or None
    looked: list[str] = []
    if module_part.endswith(".py"):
        path = Path(module_part).expanduser()
        if path.is_file():
            return _strategy_class(_import_file(path.resolve(), spec), class_name, spec)
        raise UnknownStrategy(f"unknown strategy {spec}: no file {path}")
    if not _DOTTED.match(module_part):
        raise UnknownStrategy(f"unknown strategy {spec}: not a name, a dotted path or a .py file")
    if _NAME.match(module_part):
        folder = Path(directory) if directory is not None else strategies_dir()
        path = folder / f"{module_part}.py"
        looked.append(str(path))
        if path.is_file():
            return _strategy_class(_import_file(path, spec), class_name, spec)
        for module_name in (SHIPPED.get(module_part), f"{EXAMPLES_PACKAGE}.{module_part}"):
            if module_name is None:
                continue
            looked.append(module_name)
            module = _import(module_name, spec)
            if module is not None:
                return _strategy_class(module, class_name, spec)
    looked.append(f"module {module_part} on sys.path")
    module = _import(module_part, spec)
    if module is not None:
        return _strategy_class(module, class_name, spec)
    raise UnknownStrategy(f"unknown strategy {spec}: looked in {'; '.join(looked)}")


def load_strategy(spec: str, params: Mapping[str, object] | None = None, *,
                  directory: Path | str | None = None, **kwargs) -> Strategy:
    """The strategy `spec` names, built with `params` (each checked by name against its declared
    range). Keyword arguments go to the strategy's constructor (the ensemble takes `engine`)."""
    cls = find_strategy_class(spec, directory=directory)
    try:
        return cls(params, **kwargs)
    except StrategyError:
        raise
    except Exception as exc:
        raise StrategyError(f"strategy {spec}: building {cls.__name__} failed: {type(exc).__name__}: {exc}") from exc


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """`["fast=5", "slow=20"]` -> {"fast": "5", "slow": "20"}; the strategy converts and checks the values."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise StrategyError(f"parameter {pair!r}: write name=value")
        out[key.strip()] = value.strip()
    return out
