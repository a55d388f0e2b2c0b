"""Reading a data file: strict YAML (no duplicate keys) into ``Node`` values that know their
file and field path, so every problem is reported as ``file: field.path: problem``.

The bottom of ``instruments/``: ``schema.py`` builds on it, then ``wording.py`` (overlays and
localisation), then ``loader.py`` (files into a registry).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

#: Text per locale, e.g. ``{"en": "Pain", "zh_Hans": "疼痛"}`` (read-only).
Text = Mapping[str, str]

#: Identifiers in data files (instrument, item and page ids).
ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class InstrumentFileError(ValueError):
    """A questionnaire data file is malformed.

    The message names the file and the field path so a data editor can fix it
    without reading code, e.g. ``eortc_qlq_c30.yaml: items[3].options[0].code:
    expected integer``.
    """

    def __init__(self, file: str, path: str, problem: str) -> None:
        self.file = file
        self.path = path
        self.problem = problem
        where = f"{file}: {path}" if path else file
        super().__init__(f"{where}: {problem}")


def frozen_text(values: Mapping[str, str]) -> Text:
    """Read-only copy of a per-locale text mapping."""
    return MappingProxyType(dict(values))


_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_Base):
    """Safe YAML loader that rejects duplicate keys (PyYAML keeps the last)."""


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str, file: str) -> Any:
    """Parse YAML text, turning syntax errors into ``InstrumentFileError``."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InstrumentFileError(file, "", f"not valid YAML: {exc}") from None


class Node:
    """A value read from a data file, with its file name and field path.

    Every accessor either returns a checked value or raises an
    ``InstrumentFileError`` pointing at this node.
    """

    def __init__(self, file: str, path: str, value: Any) -> None:
        self.file = file
        self.path = path
        self.value = value

    def fail(self, problem: str) -> NoReturn:
        raise InstrumentFileError(self.file, self.path, problem)

    def child(self, key: str | int) -> Node:
        path = f"{self.path}.{key}" if self.path else str(key)
        return Node(self.file, path, self.value[key])

    def at(self, index: int) -> Node:
        return Node(self.file, f"{self.path}[{index}]", self.value[index])

    def fields(self, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Node]:
        """Children of a mapping, rejecting missing required and unknown keys."""
        mapping = self.mapping()
        for key in mapping:
            if key not in required and key not in optional:
                self.with_key(key).fail("unknown field")
        for key in required:
            if key not in mapping:
                self.with_key(key).fail("missing required field")
        return {key: self.child(key) for key in mapping}

    def with_key(self, key: Any) -> Node:
        path = f"{self.path}.{key}" if self.path else str(key)
        return Node(self.file, path, None)

    def mapping(self) -> Mapping[Any, Any]:
        if not isinstance(self.value, Mapping):
            self.fail(f"expected mapping, got {_type(self.value)}")
        return self.value

    def entries(self) -> Iterator[tuple[Any, Node]]:
        for key in self.mapping():
            yield key, self.child(key)

    def as_list(self, *, min_len: int = 0) -> list[Node]:
        if not isinstance(self.value, list):
            self.fail(f"expected list, got {_type(self.value)}")
        if len(self.value) < min_len:
            self.fail(f"expected at least {min_len} entr{'y' if min_len == 1 else 'ies'}")
        return [self.at(i) for i in range(len(self.value))]

    def as_str(self) -> str:
        if not isinstance(self.value, str):
            self.fail(f"expected string, got {_type(self.value)}")
        if not self.value.strip():
            self.fail("expected non-empty string")
        return self.value

    def ident(self, pattern: re.Pattern[str] = ID_PATTERN) -> str:
        value = self.as_str()
        if not pattern.match(value):
            self.fail(f"{value!r} is not a valid identifier ({pattern.pattern})")
        return value

    def choice(self, allowed: tuple[str, ...]) -> str:
        value = self.as_str()
        if value not in allowed:
            self.fail(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def as_int(self) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            self.fail(f"expected integer, got {_type(self.value)}")
        return self.value

    def as_number(self) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            self.fail(f"expected number, got {_type(self.value)}")
        if not math.isfinite(self.value):
            self.fail("expected a finite number")
        return float(self.value)

    def as_bool(self) -> bool:
        if not isinstance(self.value, bool):
            self.fail(f"expected true or false, got {_type(self.value)}")
        return self.value

    def as_text(self, languages: tuple[str, ...]) -> Text:
        """A per-locale text present, non-empty, in exactly the declared languages."""
        mapping = self.mapping()
        for key in mapping:
            if key not in languages:
                self.with_key(key).fail(f"language not declared in languages ({', '.join(languages)})")
        for language in languages:
            if language not in mapping:
                self.with_key(language).fail("missing text for a declared language")
        return frozen_text({language: self.child(language).as_str() for language in languages})


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__
