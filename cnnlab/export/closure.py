"""cnnlab's own plain-PyTorch code, copied out with everything it needs: the source closure.

A notebook exported from a run must not import cnnlab, yet its model classes, its procedural dataset
and its augmentation should be the very code cnnlab ran (so a change in cnnlab changes the export too,
and the same seed gives the same weights). :class:`Closure` takes a function or class of cnnlab, copies
its source (comments included), and follows every global name it uses: another function or class of
cnnlab is copied in turn (dependencies first), a module-level constant is copied as its assignment
statement, a module or a name from torch, torchvision, numpy, math or typing becomes an import line.
Text marked for translation is written out in English: ``_("...")`` and ``N_("...")`` become the plain
string, ``ngettext(one, many, n)`` a conditional, ``fmt(v, spec)`` Python's ``format``. Anything else (a name from another library, an object built at run time) is an :class:`ExportError`:
the export refuses rather than writing code that would not run.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import symtable
import sys
import textwrap
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from .. import i18n
from ..errors import CnnlabError
from ..i18n import _

#: The packages written-out code may import (the notebook needs nothing else).
ALLOWED_PACKAGES = ("torch", "torchvision", "numpy", "math", "typing", "collections", "copy", "sklearn")


class ExportError(CnnlabError):
    """A run, a lesson or a model that cannot be exported as asked, or a file that cannot be written."""


@dataclass
class Code:
    """Import lines and definitions (dependencies first) that together run without cnnlab."""

    imports: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n\n\n".join(part for part in ("\n".join(self.imports), *self.blocks) if part)


class Closure:
    """Collects definitions copied from cnnlab, each once, dependencies before what uses them.

    ``replacements``: objects written out as given source instead of their own (e.g. a layer whose own
    code raises one of cnnlab's error classes), keyed by the object; the source's names are resolved
    like a copied block's, in ``torch.nn``'s terms (``torch``, ``nn``, ``F``)."""

    def __init__(self, replacements: dict[Any, str] | None = None):
        self.code = Code()
        self._done: set[tuple[str, str]] = set()
        self._defined: set[str] = set()  # names the written code defines (its blocks, or cells around them)
        self._replacements = dict(replacements or {})

    def add(self, obj: Any) -> str:
        """Copy the function or class ``obj`` (and what it needs); returns the name it has in the code."""
        name = getattr(obj, "__name__", None)
        module = getattr(obj, "__module__", "") or ""
        key = (module, getattr(obj, "__qualname__", name or ""))
        if key in self._done:
            return str(name)
        if not name or "." in key[1]:
            raise ExportError(_("{obj!r} is not a module-level function or class: it cannot be written out.").format(
                obj=obj))
        if name in self._defined:
            raise ExportError(_("two definitions named {name!r} would meet in the exported code ({module}'s and "
                                "another): it cannot be written out.").format(name=name, module=module))
        self._done.add(key)
        if obj in self._replacements:
            self._add_block(textwrap.dedent(self._replacements[obj]).strip("\n"), _namespace_of_replacements())
        elif isinstance(obj, type) and issubclass(obj, Exception) and module.startswith("cnnlab"):
            doc = (inspect.getdoc(obj) or "An error.").splitlines()[0]
            self.code.blocks.append(f'class {name}(ValueError):\n    """{doc}"""')
        else:
            self._add_block(_source(obj), vars(sys.modules[module]))
        return name

    def add_source(self, source: str, namespace: dict[str, Any] | None = None) -> None:
        """A block of code written for the export (not copied), its names resolved in ``namespace``
        (by default the names of the notebook's imports: ``torch``, ``nn``, ``F``, ``np``...)."""
        self._add_block(textwrap.dedent(source).strip("\n"), namespace or _namespace_of_replacements())

    def add_constant(self, obj_module: ModuleType, name: str) -> str:
        """Copy the module-level constant ``name`` of a cnnlab module (its assignment statement)."""
        self._add_constant(name, vars(obj_module))
        return name

    def define(self, *names: str) -> None:
        """Names the notebook defines outside the copied blocks (``device`` in the first cell...)."""
        self._defined.update(names)

    def merge(self, code: Code) -> None:
        """Code written by another closure (a model's): its imports, and each block not written yet."""
        for line in code.imports:
            self.import_line(line)
        for block in code.blocks:
            if block in self.code.blocks:
                continue
            clash = _defined_at_top(block) & self._defined
            if clash:
                raise ExportError(_("two different definitions of {names} would meet in the exported code: it "
                                    "cannot be written out.").format(names=", ".join(sorted(clash))))
            self.code.blocks.append(block)
            self._defined |= _defined_at_top(block)

    def import_line(self, line: str) -> None:
        if line not in self.code.imports:
            self.code.imports.append(line)
            for node in ast.parse(line).body:  # the names it binds are defined for the blocks that follow
                for alias in getattr(node, "names", []):
                    self._defined.add(alias.asname or alias.name.split(".")[0])

    # ---- resolving names ------------------------------------------------------------------------

    def _add_block(self, source: str, namespace: dict[str, Any]) -> None:
        source = _in_english(source, namespace)
        for name in sorted(_globals_used(source) - self._defined):
            self._resolve(name, namespace)
        if source not in self.code.blocks:
            self.code.blocks.append(source)
            self._defined |= _defined_at_top(source)

    def _resolve(self, name: str, namespace: dict[str, Any]) -> None:
        if name in self._defined:
            return
        if name not in namespace:
            if hasattr(builtins, name):
                return
            raise ExportError(_("the name {name!r} used by cnnlab's code is not defined at its module level, so "
                                "that code cannot be written out.").format(name=name))
        value = namespace[name]
        if isinstance(value, ModuleType):
            self.import_line(_module_import(name, value))
            return
        origin = getattr(value, "__module__", None) if callable(value) or isinstance(value, type) else None
        if origin and origin.startswith("cnnlab"):
            if getattr(value, "__name__", None) != name:
                raise ExportError(_("cnnlab's code calls {name!r}, an alias of {value!r}: it cannot be written "
                                    "out.").format(name=name, value=value))
            self.add(value)
        elif origin and origin.split(".")[0] in ALLOWED_PACKAGES:
            self.import_line(_name_import(name, value, origin))
        elif namespace.get("__name__", "").startswith("cnnlab"):
            self._add_constant(name, namespace)
        else:
            raise ExportError(_("{name!r} ({kind}) cannot be written out as plain PyTorch.").format(
                name=name, kind=type(value).__name__))

    def _add_constant(self, name: str, namespace: dict[str, Any]) -> None:
        """A module-level constant: its assignment statement, copied from the module's source."""
        key = (namespace["__name__"], name)
        if key in self._done:
            return
        self._done.add(key)
        module, statement = _assignment(sys.modules[namespace["__name__"]], name)
        self._add_block(statement, vars(module))


# ---- helpers ------------------------------------------------------------------------------------------


def _source(obj: Any) -> str:
    try:
        return textwrap.dedent(inspect.getsource(obj)).strip("\n")
    except (OSError, TypeError) as e:
        raise ExportError(_("the source of {obj!r} is not available ({error}), so it cannot be written out.").format(
            obj=obj, error=e)) from None


# what each of cnnlab.i18n's functions becomes in written-out code (the export is plain English PyTorch)
_TRANSLATING = {i18n.gettext: "text", i18n.N_: "text", i18n.ngettext: "plural", i18n.fmt: "format"}


def _translating(func: ast.expr, namespace: dict[str, Any]) -> str | None:
    """What a call's function is among :data:`_TRANSLATING` (``_``, ``i18n.ngettext``...), or None."""
    if isinstance(func, ast.Name):
        value = namespace.get(func.id)
    elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
            and namespace.get(func.value.id) is i18n:
        value = getattr(i18n, func.attr, None)
    else:
        return None
    try:
        return _TRANSLATING.get(value)
    except TypeError:  # an unhashable value: not one of the functions
        return None


def _in_english(source: str, namespace: dict[str, Any]) -> str:
    """``source`` with its calls of cnnlab.i18n replaced by plain Python that says the English text, one
    call at a time from the last (a call that starts last holds no other call)."""
    while True:
        calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and _translating(n.func, namespace)]
        if not calls:
            return source
        call = max(calls, key=lambda n: (n.lineno, n.col_offset))
        source = _replace_span(source, call, _english_call(source, call, _translating(call.func, namespace)))


def _english_call(source: str, call: ast.Call, role: str | None) -> str:
    """The plain Python for one call of cnnlab.i18n (see :data:`_TRANSLATING`)."""
    args = [ast.get_source_segment(source, a) or "" for a in call.args]
    plain = not call.keywords and not any(isinstance(a, ast.Starred) for a in call.args)
    if plain and role == "text" and len(args) == 1:
        return args[0] if "\n" not in args[0] else f"({args[0]})"
    if plain and role == "plural" and len(args) == 3:
        return f"({args[0]} if {args[2]} == 1 else {args[1]})"
    if plain and role == "format" and 1 <= len(args) <= 2:
        return f"format({', '.join(args)})"
    raise ExportError(_("cnnlab's code calls {name} in a way the export cannot write out in plain English: "
                        "{call}").format(name=ast.unparse(call.func), call=ast.unparse(call)))


def _replace_span(source: str, node: ast.expr, text: str) -> str:
    """``source`` with the code of ``node`` replaced by ``text`` (ast's columns count UTF-8 bytes)."""
    lines = source.splitlines(keepends=True)

    def at(line: int, col: int) -> int:
        return sum(len(x) for x in lines[:line - 1]) + len(lines[line - 1].encode()[:col].decode())

    end = at(node.end_lineno or node.lineno, node.end_col_offset or 0)  # ast.parse gives every node its end
    return source[:at(node.lineno, node.col_offset)] + text + source[end:]


def _globals_used(source: str) -> set[str]:
    """The global names a block of code reads (its own definitions excluded), from Python's symbol table."""
    found: set[str] = set()

    def walk(table: symtable.SymbolTable) -> None:
        top = table.get_type() == "module"
        for s in table.get_symbols():
            if top:
                if s.is_referenced() and not s.is_assigned() and not s.is_imported():
                    found.add(s.get_name())
            elif s.is_referenced() and s.is_global() and not s.is_declared_global():
                found.add(s.get_name())
        for child in table.get_children():
            walk(child)

    walk(symtable.symtable(source, "<export>", "exec"))
    return found - _defined_at_top(source)


def _defined_at_top(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        else:
            names |= _assigned_names(node)
    return names


def _assignment(module: ModuleType, name: str) -> tuple[ModuleType, str]:
    """The module that assigns ``name`` at its top level (following ``from .x import name``) and that one
    statement, with the comment lines just above it."""
    text = inspect.getsource(module)
    lines = text.splitlines()
    found = []
    for node in ast.parse(text).body:
        if name in _assigned_names(node):
            found.append(node)
        elif isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name and a.name == name for a in node.names):
            package = module.__name__ if module.__name__ == module.__package__ else module.__package__ or ""
            source = importlib.import_module("." * node.level + (node.module or ""), package) if node.level \
                else importlib.import_module(node.module or "")
            if source.__name__.startswith("cnnlab"):
                return _assignment(source, name)
    if len(found) != 1:
        raise ExportError(_("{module}.{name} is not one plain module-level assignment, so it cannot be written "
                            "out.").format(module=module.__name__, name=name))
    node = found[0]
    start = node.lineno - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return module, "\n".join(lines[start:node.end_lineno])


def _assigned_names(node: ast.stmt) -> set[str]:
    """The names a module-level assignment binds (``a = ...``, ``a: T = ...``, ``a, b = ...``)."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    names: set[str] = set()
    for t in targets:
        for sub in ast.walk(t):
            if isinstance(sub, ast.Name):
                names.add(sub.id)
    return names


def _module_import(name: str, module: ModuleType) -> str:
    full = module.__name__
    if full.split(".")[0] not in ALLOWED_PACKAGES:
        raise ExportError(_("cnnlab's code uses the module {module}, which the exported code cannot import (only "
                            "{allowed}).").format(module=full, allowed=", ".join(ALLOWED_PACKAGES)))
    if full == name:
        return f"import {full}"
    parent, _dot, last = full.rpartition(".")
    if parent and last == name:
        return f"from {parent} import {name}"
    return f"import {full} as {name}"


def _name_import(name: str, value: Any, origin: str) -> str:
    """``from <the shortest public module that has it> import name``."""
    parts = origin.split(".")
    for i in range(1, len(parts) + 1):
        module_name = ".".join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if getattr(module, name, None) is value:
            return f"from {module_name} import {name}"
    raise ExportError(_("{name!r} from {origin} cannot be imported by its name in the exported code.").format(
        name=name, origin=origin))


def _namespace_of_replacements() -> dict[str, Any]:
    """The names a block written for the export may use: the notebook's imports."""
    return {"__name__": "export", "torch": torch, "nn": nn, "F": F, "np": np, "torchvision": torchvision}
