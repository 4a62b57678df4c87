"""load_yaml: PyYAML's safe loading, except that a mapping key given twice is refused with
its dotted path and both lines (PyYAML alone keeps the last one silently)."""

from __future__ import annotations

import pytest
import yaml

from afbr.config_reader import DuplicateKey, DuplicateKeyError, load_yaml


def test_a_plain_document_loads_as_safe_load_does() -> None:
    text = "a: 1\nb: [x, {c: 2}]\nd: !!str 3\n"
    assert load_yaml(text) == yaml.safe_load(text)


def test_duplicates_are_named_by_path_and_lines() -> None:
    text = "a: 1\nb:\n  - {c: 1}\n  - c: 1\n    c: 2\na: 3\n"
    with pytest.raises(DuplicateKeyError) as info:
        load_yaml(text)
    assert info.value.duplicates == [  # in document order
        DuplicateKey("b[1].c", line=5, first_line=4),
        DuplicateKey("a", line=6, first_line=1),
    ]
    assert isinstance(info.value, yaml.YAMLError)  # callers catching YAMLError still do
    assert info.value.problem_mark is not None


def test_merge_keys_and_aliases_are_not_duplicates() -> None:
    text = "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  x: 3\nagain: *b\n"
    assert load_yaml(text) == {
        "base": {"x": 1, "y": 2},
        "use": {"x": 3, "y": 2},
        "again": {"x": 1, "y": 2},
    }


def test_unsafe_tags_are_still_refused() -> None:
    with pytest.raises(yaml.YAMLError):
        load_yaml("!!python/object/apply:os.system ['true']\n")
