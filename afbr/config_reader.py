"""Typed reading of a YAML mapping with errors that name the key, the value and why.

The reader collects every error instead of stopping at the first, so `afbr config check`
can show an operator everything that is wrong with a file in one go.  Values are converted by
small functions that raise `ValueError` with the reason; the reader turns that into a
`ConfigProblem` carrying the dotted key path (`bgp.neighbors[1].md5_key`).

YAML files (the config and the key files) are read with `load_yaml`, which refuses a key given
twice in one mapping: PyYAML would silently keep the last, so an operator's second `md5_key:`
or `keys_file:` would win without a word.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MISSING = object()


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file: where, what was there, and why it is refused."""

    path: str
    value: object
    why: str

    @property
    def has_value(self) -> bool:
        """False when the key was missing (as opposed to present with a bad value)."""
        return self.value is not _MISSING

    def __str__(self) -> str:
        if self.value is _MISSING:
            return f"{self.path}: {self.why}"
        return f"{self.path}: {self.value!r}: {self.why}"


class ConfigError(Exception):
    """A config file that cannot be used; `problems` lists every reason."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


class Reader:
    """Reads keys out of nested mappings, recording problems instead of raising."""

    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []

    def problem(self, path: str, value: object = _MISSING, why: str = "") -> None:
        self.problems.append(ConfigProblem(path, value, why))

    def mapping(self, value: object, path: str, known: tuple[str, ...]) -> Mapping[str, object]:
        """Check that `value` is a mapping with only `known` keys (typos are named)."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problem(path or "(top level)", value, "must be a mapping of keys to values")
            return {}
        for key in value:
            if key not in known:
                near = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                self.problem(_join(path, str(key)), _MISSING, f"unknown key{hint}")
        return value

    def get(
        self,
        section: Mapping[str, object],
        path: str,
        key: str,
        convert: Callable[[object], T],
        default: T | None = None,
        *,
        required: bool = False,
    ) -> T | None:
        """Convert `section[key]`; a missing optional key gives `default`."""
        where = _join(path, key)
        if key not in section or section[key] is None:
            if required:
                self.problem(where, _MISSING, "is required")
            return default
        raw = section[key]
        try:
            return convert(raw)
        except (ValueError, TypeError) as exc:
            self.problem(where, raw, str(exc))
            return default

    def items(self, section: Mapping[str, object], path: str, key: str) -> list[tuple[str, object]]:
        """The elements of a list value with their paths (`key[0]`, `key[1]`, ...)."""
        raw = section.get(key)
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problem(_join(path, key), raw, "must be a list")
            return []
        return [(f"{_join(path, key)}[{i}]", item) for i, item in enumerate(raw)]


@dataclass(frozen=True)
class DuplicateKey:
    """A mapping key given twice: its dotted path and the (1-based) lines of both."""

    path: str
    line: int
    first_line: int


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A YAML document with a mapping key given twice (YAML 1.2 §3.2.1.1: keys are unique)."""

    def __init__(self, duplicates: list[DuplicateKey], mark: yaml.Mark | None) -> None:
        first = duplicates[0]
        super().__init__(
            problem=f"key {first.path} given twice (lines {first.first_line} and {first.line})",
            problem_mark=mark,
        )
        self.duplicates = duplicates


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, except that a key given twice in a mapping is an error naming
    the key and both lines (SafeLoader keeps the last one silently)."""

    def construct_document(self, node: yaml.Node) -> Any:
        duplicates: list[DuplicateKey] = []
        marks: list[yaml.Mark] = []
        _find_duplicates(node, "", duplicates, marks, set())
        if duplicates:
            raise DuplicateKeyError(duplicates, marks[0])
        return super().construct_document(node)


def load_yaml(text: str | bytes) -> object:
    """Parse one YAML document safely, refusing duplicate keys (DuplicateKeyError)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def duplicate_problems(error: DuplicateKeyError) -> list[ConfigProblem]:
    return [
        ConfigProblem(
            d.path,
            _MISSING,
            f"given twice (lines {d.first_line} and {d.line}); remove one "
            "(YAML would silently keep only the last)",
        )
        for d in error.duplicates
    ]


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _find_duplicates(
    node: yaml.Node,
    path: str,
    out: list[DuplicateKey],
    marks: list[yaml.Mark],
    seen_nodes: set[int],
) -> None:
    if id(node) in seen_nodes:  # an alias to a node already walked (or a recursive one)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            here = _join(path, name)
            ident = (key_node.tag, name)
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and ident in first_line:
                out.append(DuplicateKey(here, line, first_line[ident]))
                marks.append(key_node.start_mark)
            else:
                first_line.setdefault(ident, line)
            _find_duplicates(value_node, here, out, marks, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _find_duplicates(item, f"{path}[{index}]", out, marks, seen_nodes)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -- converters: each raises ValueError with an operator-readable reason --------------------


def to_int(low: int, high: int) -> Callable[[object], int]:
    def convert(raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"must be a whole number from {low} to {high}")
        if not low <= raw <= high:
            raise ValueError(f"must be from {low} to {high}")
        return raw

    return convert


def to_bool(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise ValueError("must be true or false")
    return raw


def to_str(raw: object) -> str:
    if not isinstance(raw, str) or not raw:
        raise ValueError("must be a non-empty string")
    return raw


def to_choice(*choices: str) -> Callable[[object], str]:
    def convert(raw: object) -> str:
        if raw not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return str(raw)

    return convert


def to_address(raw: object) -> IPAddress:
    try:
        return ipaddress.ip_address(str(raw))
    except ValueError:
        raise ValueError("is not an IPv4 or IPv6 address") from None


def to_network(raw: object) -> IPNetwork:
    try:
        return ipaddress.ip_network(str(raw), strict=True)
    except ValueError as exc:
        raise ValueError(f"is not a prefix with host bits clear ({exc})") from None


def to_router_id(raw: object) -> ipaddress.IPv4Address:
    address = to_address(raw)
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError("a BGP router id is a dotted-quad (IPv4) value")
    return address


def to_hex_bytes(*lengths: int) -> Callable[[object], bytes]:
    def convert(raw: object) -> bytes:
        text = str(raw).lower().removeprefix("0x")
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise ValueError("must be hexadecimal, e.g. 0x0102030405060708") from None
        if len(value) not in lengths:
            sizes = " or ".join(str(n) for n in lengths)
            raise ValueError(f"must be {sizes} bytes long")
        return value

    return convert
