"""Key files: owner-only or refused (naming file and mode); secrets never in repr or logs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from afbr.bgp.keyfile import KeyFileError, KeyRing, Secret, load_key_file

SECRET = "s0ftw1re-md5-TOPSECRET"


def _key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "bgp-keys.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_loads_string_and_hex_keys(tmp_path: Path) -> None:
    path = _key_file(tmp_path, f'rr1: "{SECRET}"\nike-b: {{hex: "0x0123456789abcdef"}}\n')
    keys = load_key_file(path)
    assert keys["rr1"].reveal() == SECRET.encode()
    assert keys["ike-b"].reveal() == bytes.fromhex("0123456789abcdef")
    assert sorted(keys) == ["ike-b", "rr1"] and len(keys) == 2


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602])
def test_group_or_other_access_is_refused_naming_file_and_mode(tmp_path: Path, mode: int) -> None:
    path = _key_file(tmp_path, f"rr1: {SECRET}\n", mode)
    with pytest.raises(KeyFileError) as caught:
        load_key_file(path)
    message = str(caught.value)
    assert str(path) in message and f"{mode:04o}" in message
    assert SECRET not in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    assert load_key_file(_key_file(tmp_path, f"rr1: {SECRET}\n", mode))["rr1"]


def test_symlink_and_missing_file_are_refused(tmp_path: Path) -> None:
    target = _key_file(tmp_path, f"rr1: {SECRET}\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    with pytest.raises(KeyFileError, match=r"link\.yaml"):
        load_key_file(link)
    with pytest.raises(KeyFileError, match=r"nothing\.yaml"):
        load_key_file(tmp_path / "nothing.yaml")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"rr1: [{SECRET}, 'x'\n", "not valid YAML"),
        (f"- {SECRET}\n", "mapping"),
        ("rr1: 12\n", "rr1"),
        ("rr1: ''\n", "rr1"),
        ("rr1: {hex: zz}\n", "not hex"),
        ("1: abc\n", "names must be strings"),
    ],
)
def test_malformed_files_name_the_problem_without_echoing_secrets(
    tmp_path: Path, text: str, problem: str
) -> None:
    with pytest.raises(KeyFileError) as caught:
        load_key_file(_key_file(tmp_path, text))
    assert problem in str(caught.value)
    assert SECRET not in str(caught.value)


def test_secrets_are_redacted_everywhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    keys = load_key_file(_key_file(tmp_path, f"rr1: {SECRET}\n"))
    secret = keys["rr1"]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("keys %s %r %s", keys, secret, [secret])
    for text in (repr(secret), str(secret), repr(keys), f"{secret}", caplog.text):
        assert SECRET not in text
    assert "rr1" in repr(keys)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)


def test_unknown_key_name_names_the_file(tmp_path: Path) -> None:
    path = _key_file(tmp_path, f"rr1: {SECRET}\n")
    with pytest.raises(KeyFileError, match=f"{path}.*'rr9'"):
        load_key_file(path)["rr9"]


def test_key_ring_from_values_and_equality() -> None:
    ring = KeyRing.from_values({"a": "x", "b": b"y"})
    assert ring["a"] == Secret("other-name", b"x") and ring["b"].reveal() == b"y"
    assert ring["a"] != ring["b"]


def test_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    for path in (fifo, directory):
        with pytest.raises(KeyFileError, match="not a regular file"):
            load_key_file(path)
