"""The data-file kit: strict YAML read into ``Node`` values that know their file and field path.

Instruments, value sets, wording overlays, schedules and alert rules are all read with it, so
every problem in any of them reads the same way, ``file: field.path: problem``, e.g.
``conquer.yaml: rules[3].window.before: must be >= 0, got -2``, and a data editor can fix it
without reading code. It sits at the bottom of the domain layer (``instruments/``,
``scheduling/`` and ``alerts/`` import it; it imports nothing of the app).

The reader rejects what PyYAML lets through silently: a duplicate key (PyYAML keeps the last),
reported at its field path.
``Node.fields`` rejects unknown and missing fields; the ``as_*`` accessors check types, so a
YAML ``yes`` is never taken for 1 nor ``3.0`` for a version string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Hashable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

__all__ = ["ID_PATTERN", "DataFileError", "Node", "Text", "frozen_text", "read_file", "read_yaml"]

#: Text per locale, e.g. ``{"en": "Pain", "zh_Hans": "疼痛"}`` (read-only).
Text = Mapping[str, str]

#: Identifiers in data files (instrument, item, page, rule and schedule ids).
ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class DataFileError(ValueError):
    """A data file is malformed: ``file`` names it, ``field`` the dotted path inside it
    (``items[3].options[0].code``; empty for the file as a whole), ``problem`` what is wrong.

    The message is ``file: field: problem`` (``file: problem`` without a field).
    """

    def __init__(self, file: str, field: str, problem: str) -> None:
        self.file = file
        self.field = field
        self.problem = problem
        super().__init__(f"{file}: {field}: {problem}" if field else f"{file}: {problem}")


def frozen_text(values: Mapping[str, str]) -> Text:
    """Read-only copy of a per-locale text mapping."""
    return MappingProxyType(dict(values))


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C one when PyYAML has it
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_yaml(text: str, file: str) -> Any:
    """Parse YAML ``text`` safely; a syntax error or a duplicate key is a ``DataFileError`` on ``file``.

    A duplicate key is reported at its field path (PyYAML would keep the last value silently);
    a syntax error, before there are fields, by line and column.
    """
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _reject_duplicate_keys(loader, file, "", root, set())
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise DataFileError(file, "", f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def _reject_duplicate_keys(loader: Any, file: str, path: str, node: yaml.Node, seen_nodes: set[int]) -> None:
    if id(node) in seen_nodes:  # an alias: checked where its anchor is (and YAML may recurse)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_duplicate_keys(loader, file, f"{path}[{index}]", item, seen_nodes)
    elif isinstance(node, yaml.MappingNode):
        lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:  # "<<: *defaults": explicit keys may override merged ones
                continue
            key = loader.construct_object(key_node, deep=True)
            field = f"{path}.{key}" if path else str(key)
            if isinstance(key, Hashable):
                if key in lines:
                    raise DataFileError(file, field, f"duplicate key {key!r} (also on line {lines[key]})")
                lines[key] = key_node.start_mark.line + 1
            _reject_duplicate_keys(loader, file, field, value_node, seen_nodes)


def read_file(path: str | Path, file: str | None = None) -> Node:
    """Read and parse the YAML file at ``path`` into its root ``Node``.

    ``file`` names it in errors (default: ``path`` as given). An unreadable file is a
    ``DataFileError`` too (``cannot read file: ...``).
    """
    file = str(path) if file is None else file
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFileError(file, "", f"cannot read file: {exc.strerror or exc}") from None
    return Node(file, "", read_yaml(text, file))


class Node:
    """A value read from a data file, with its file name and field path.

    Every accessor either returns a checked value or raises a ``DataFileError`` pointing at
    this node.
    """

    def __init__(self, file: str, path: str, value: Any) -> None:
        self.file = file
        self.path = path
        self.value = value

    def fail(self, problem: str) -> NoReturn:
        raise DataFileError(self.file, self.path, problem)

    def child(self, key: str | int) -> Node:
        return Node(self.file, self._key_path(key), self.value[key])

    def at(self, index: int) -> Node:
        return Node(self.file, f"{self.path}[{index}]", self.value[index])

    def with_key(self, key: Any) -> Node:
        """The (possibly absent) field ``key`` of this mapping, for a message about it."""
        return Node(self.file, self._key_path(key), None)

    def labelled(self, label: str) -> Node:
        """This node with ``(label)`` after its path, e.g. ``rules[3](red_fever)``."""
        return Node(self.file, f"{self.path}({label})", self.value)

    def _key_path(self, key: Any) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def fields(self, required: Collection[str], optional: Collection[str] = ()) -> dict[str, Node]:
        """Children of a mapping, rejecting unknown keys and missing required ones."""
        mapping = self.mapping()
        allowed = [*required, *optional]
        for key in mapping:
            if key not in allowed:
                self.with_key(key).fail(f"unknown field (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in mapping:
                self.with_key(key).fail("missing required field")
        return {key: self.child(key) for key in mapping}

    def mapping(self) -> Mapping[Any, Any]:
        if not isinstance(self.value, Mapping):
            self.fail(f"expected mapping, got {_kind(self.value)}")
        return self.value

    def entries(self) -> Iterator[tuple[Any, Node]]:
        for key in self.mapping():
            yield key, self.child(key)

    def as_list(self, *, min_len: int = 0) -> list[Node]:
        if not isinstance(self.value, list):
            self.fail(f"expected list, got {_kind(self.value)}")
        if len(self.value) < min_len:
            self.fail("expected a non-empty list" if min_len == 1 else f"expected at least {min_len} entries")
        return [self.at(i) for i in range(len(self.value))]

    def as_str(self, pattern: re.Pattern[str] | None = None) -> str:
        """A non-empty string, matching ``pattern`` in full when given."""
        if not isinstance(self.value, str):
            self.fail(f"expected string, got {_kind(self.value)}")
        if not self.value.strip():
            self.fail("expected non-empty string")
        if pattern is not None and not pattern.fullmatch(self.value):
            self.fail(f"{self.value!r} does not match {pattern.pattern}")
        return self.value

    def ident(self, pattern: re.Pattern[str] = ID_PATTERN) -> str:
        return self.as_str(pattern)

    def choice(self, allowed: Collection[str]) -> str:
        if not isinstance(self.value, str) or self.value not in allowed:
            self.fail(f"{self.value!r} is not one of {', '.join(allowed)}")
        return self.value

    def as_int(self, *, minimum: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            self.fail(f"expected integer, got {_kind(self.value)}")
        if minimum is not None and self.value < minimum:
            self.fail(f"must be >= {minimum}, got {self.value}")
        return self.value

    def as_number(self) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            self.fail(f"expected number, got {_kind(self.value)}")
        if not math.isfinite(self.value):
            self.fail("expected a finite number")
        return float(self.value)

    def as_bool(self) -> bool:
        if not isinstance(self.value, bool):
            self.fail(f"expected true or false, got {_kind(self.value)}")
        return self.value

    def as_text(self, languages: Collection[str]) -> Text:
        """A per-locale text present, non-empty, in exactly ``languages``."""
        mapping = self.mapping()
        for key in mapping:
            if key not in languages:
                self.with_key(key).fail(f"language not declared (languages: {', '.join(languages)})")
        for language in languages:
            if language not in mapping:
                self.with_key(language).fail("missing text for a declared language")
        return frozen_text({language: self.child(language).as_str() for language in languages})


def _kind(value: Any) -> str:
    """``null``, or the type and (shortened) value: ``str 'three'``, ``bool True``."""
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]
