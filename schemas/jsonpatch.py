"""RFC 6902 JSON Patch over RFC 6901 JSON Pointers, as pure functions on decoded JSON (no I/O).

``apply_patch`` follows the RFC: the operations apply in order to a copy of the document, and the
first one that fails (a missing target, an out-of-range index, a failed ``test``) aborts the whole
patch with a ``PatchError`` naming that operation; the input is never changed. ``operation_problems``
checks one operation's shape without any document, so a request can be refused before its plan exists.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from schemas.problems import unknown_field

# Each operation and the member it takes besides ``op`` and ``path``.
ARGUMENT: Mapping[str, str | None] = {
    "add": "value",
    "remove": None,
    "replace": "value",
    "move": "from",
    "copy": "from",
    "test": "value",
}
_POINTER = re.compile(r"(/([^~/]|~[01])*)*")
_INDEX = re.compile(r"0|[1-9][0-9]*")  # RFC 6901: no leading zeros, no sign
_OPS = ", ".join(ARGUMENT)
_NOT_A_POINTER = "must be a JSON pointer: empty or starting with /, with ~ only in ~0 or ~1"


class PatchError(ValueError):
    """A patch operation failed or is malformed. Reads ``<where>.<index>: <problem>``, e.g.
    ``plan_edit.patch.2: path /sections/9 does not exist``."""

    def __init__(self, where: str, index: int, problem: str) -> None:
        super().__init__(f"{where}.{index}: {problem}")
        self.index = index
        self.problem = problem


class _Failed(Exception):
    """One operation failed; ``apply_patch`` adds which one."""


def is_pointer(value: object) -> bool:
    return isinstance(value, str) and _POINTER.fullmatch(value) is not None


def operation_problems(operation: Mapping[str, Any], *, extra_members: bool = False) -> list[tuple[str, str]]:
    """What is wrong with one operation's shape, as (member, problem) pairs; empty when well formed.
    Members the operation does not take are refused unless ``extra_members`` (RFC 6902 ignores them)."""
    op = operation.get("op")
    known = isinstance(op, str) and op in ARGUMENT
    argument = ARGUMENT[op] if isinstance(op, str) and known else None
    problems: list[tuple[str, str]] = []
    if not known:
        problems.append(("op", "Field required" if "op" not in operation else f"must be one of {_OPS}"))
    problems += _pointer_problems(operation, "path", "Field required")
    if argument == "from":
        problems += _pointer_problems(operation, "from", f"Field required by {op}")
    elif argument == "value" and "value" not in operation:
        problems.append(("value", f"Field required by {op}"))
    if not extra_members:
        taken = {"op", "path", argument} if known else {"op", "path", "value", "from"}
        members = [m for m in taken if m]
        for member in (m for m in operation if m not in taken):
            why = f"not taken by {op}" if member in ("value", "from") else unknown_field(member, members)
            problems.append((member, why))
    if not problems and op == "move" and operation["path"].startswith(operation["from"] + "/"):
        problems.append(("path", "is inside from; a location cannot be moved into one of its children"))
    return problems


def _pointer_problems(operation: Mapping[str, Any], member: str, missing: str) -> list[tuple[str, str]]:
    if member not in operation:
        return [(member, missing)]
    return [] if is_pointer(operation[member]) else [(member, _NOT_A_POINTER)]


def apply_patch(
    document: dict[str, Any], operations: Sequence[Mapping[str, Any]], *, where: str = "patch"
) -> dict[str, Any]:
    """``document`` with ``operations`` applied (a new document; the input is not changed). Raises
    ``PatchError`` at the first operation that is malformed or fails; ``where`` prefixes its index."""
    result: Any = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        if not isinstance(operation, Mapping):
            raise PatchError(where, index, "an operation must be an object")
        problems = operation_problems(operation, extra_members=True)
        if problems:
            member, problem = problems[0]
            raise PatchError(where, index, f"{member}: {problem}")
        try:
            result = _APPLY[operation["op"]](result, operation)
        except _Failed as failed:
            raise PatchError(where, index, str(failed)) from None
        if not isinstance(result, dict):
            raise PatchError(where, index, "the document must stay a JSON object")
    patched: dict[str, Any] = result
    return patched


def json_equal(a: object, b: object) -> bool:
    """JSON equality (RFC 6902 4.6): numbers by value, but true is not 1 and "10" is not 10."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _tokens(pointer: str) -> list[str]:
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer.split("/")[1:]]


def _step(node: Any, token: str, pointer: str, label: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and _INDEX.fullmatch(token) and int(token) < len(node):
        return node[int(token)]
    raise _Failed(f"{label} {pointer} does not exist")


def _get(document: Any, pointer: str, label: str = "path") -> Any:
    node = document
    for token in _tokens(pointer):
        node = _step(node, token, pointer, label)
    return node


def _parent(document: Any, pointer: str, label: str = "path") -> tuple[Any, str]:
    *ancestors, last = _tokens(pointer)
    node = document
    for token in ancestors:
        node = _step(node, token, pointer, label)
    return node, last


def _add(document: Any, pointer: str, value: Any) -> Any:
    if pointer == "":
        return value
    parent, token = _parent(document, pointer)
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list) and token == "-":
        parent.append(value)
    elif isinstance(parent, list) and _INDEX.fullmatch(token) and int(token) <= len(parent):
        parent.insert(int(token), value)
    else:
        raise _Failed(f"path {pointer} does not exist")
    return document


def _remove(document: Any, pointer: str, label: str = "path") -> Any:
    """Removes the target in place and returns its value."""
    if pointer == "":
        raise _Failed(f"{label} '' is the whole document, which cannot be removed")
    parent, token = _parent(document, pointer, label)
    _step(parent, token, pointer, label)
    return parent.pop(token if isinstance(parent, dict) else int(token))


def _replace(document: Any, pointer: str, value: Any) -> Any:
    _get(document, pointer)
    if pointer == "":
        return value
    parent, token = _parent(document, pointer)
    parent[token if isinstance(parent, dict) else int(token)] = value
    return document


def _op_add(document: Any, operation: Mapping[str, Any]) -> Any:
    return _add(document, operation["path"], copy.deepcopy(operation["value"]))


def _op_remove(document: Any, operation: Mapping[str, Any]) -> Any:
    _remove(document, operation["path"])
    return document


def _op_replace(document: Any, operation: Mapping[str, Any]) -> Any:
    return _replace(document, operation["path"], copy.deepcopy(operation["value"]))


def _op_move(document: Any, operation: Mapping[str, Any]) -> Any:
    if operation["from"] == operation["path"]:
        _get(document, operation["from"], "from")
        return document
    return _add(document, operation["path"], _remove(document, operation["from"], "from"))


def _op_copy(document: Any, operation: Mapping[str, Any]) -> Any:
    return _add(document, operation["path"], copy.deepcopy(_get(document, operation["from"], "from")))


def _op_test(document: Any, operation: Mapping[str, Any]) -> Any:
    if not json_equal(_get(document, operation["path"]), operation["value"]):
        raise _Failed(f"test failed: path {operation['path']} does not hold the given value")
    return document


_APPLY: Mapping[str, Callable[[Any, Mapping[str, Any]], Any]] = {
    "add": _op_add,
    "remove": _op_remove,
    "replace": _op_replace,
    "move": _op_move,
    "copy": _op_copy,
    "test": _op_test,
}
