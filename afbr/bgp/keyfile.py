"""Secret keys (TCP-MD5 passwords, IKE PSKs) from a key file that only its owner can read.

The file is YAML: a mapping of key name to secret (a string, or `{hex: "..."}` for binary keys).

    md5-rr1: "s0ftw1re-md5"
    ike-b: {hex: "0123456789abcdef0123456789abcdef"}

RFC 5619 §4.4.1 / RFC 5565 §13.3: the control plane's keys must stay secret, so a file that
its group or others may read (or write), a symbolic link, or a file owned by someone other than
this user or root is refused, and the error names the file and why.  A name given twice is
refused too (YAML would keep the last one silently).  `read_private_file` applies the same
rules to any secret file (the IKE private key).
A `Secret` never shows its value in repr/str (so not in logs or tracebacks); `reveal()` gives
the bytes to the one place that needs them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

from afbr.config_reader import DuplicateKeyError, load_yaml


class KeyFileError(Exception):
    """The key file is unsafe, unreadable or malformed; the message names the file.

    `file` and `why` are the two halves of the message, for callers that show them apart."""

    def __init__(self, file: object, why: str) -> None:
        self.file = str(file)
        self.why = why
        super().__init__(f"{file}: {why}")


class Secret:
    """A secret value whose repr and str are redacted."""

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: bytes) -> None:
        self.name = name
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, <redacted {len(self._value)} bytes>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self._value == other._value

    def __hash__(self) -> int:
        return hash(self.name)

    def __reduce__(self) -> str:  # refuse pickling a secret into somewhere it could leak
        raise TypeError("a Secret cannot be pickled")


class KeyRing(Mapping[str, Secret]):
    """Named secrets loaded from a key file; repr lists only the names."""

    def __init__(self, secrets: Mapping[str, Secret], source: str = "<memory>") -> None:
        self._secrets = dict(secrets)
        self.source = source

    def __getitem__(self, name: str) -> Secret:
        try:
            return self._secrets[name]
        except KeyError:
            raise KeyFileError(self.source, f"no key named {name!r}") from None

    def __contains__(self, name: object) -> bool:  # Mapping's catches only KeyError
        return name in self._secrets

    def __iter__(self) -> Iterator[str]:
        return iter(self._secrets)

    def __len__(self) -> int:
        return len(self._secrets)

    def __repr__(self) -> str:
        return f"KeyRing({self.source!r}, names={sorted(self._secrets)})"

    @classmethod
    def from_values(cls, values: Mapping[str, str | bytes], source: str = "<memory>") -> KeyRing:
        return cls(
            {
                name: Secret(name, value.encode() if isinstance(value, str) else value)
                for name, value in values.items()
            },
            source,
        )


def check_private(path: Path, st: os.stat_result) -> None:
    """Refuse a file that its group or others can read or write, that is not a regular file,
    or that neither this user nor root owns (someone else could rewrite it)."""
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(path, "not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            path,
            f"mode {mode:04o} lets group/others access it; "
            f"keys must be readable by their owner only (chmod 600 {path})",
        )
    if st.st_uid not in (0, os.geteuid()):
        raise KeyFileError(
            path,
            f"owned by uid {st.st_uid}, neither root nor this user (uid "
            f"{os.geteuid()}), who could change the keys (chown root {path})",
        )


def read_private_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a secret file, refused (KeyFileError) if it is missing, a symbolic link,
    not a regular file, group/other-accessible, or owned by someone else."""
    key_path = Path(path)
    try:
        if stat.S_ISLNK(os.lstat(key_path).st_mode):
            raise KeyFileError(
                key_path,
                "is a symbolic link; name the file itself "
                "(a link can be re-pointed by whoever owns its directory)",
            )
        # O_NONBLOCK: a FIFO planted in place of the file must not hang us.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(key_path, flags)
    except OSError as exc:
        raise KeyFileError(key_path, f"cannot open: {exc.strerror}") from None
    try:
        check_private(key_path, os.fstat(fd))  # the opened file itself: no race
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as exc:
        raise KeyFileError(key_path, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def load_key_file(path: str | os.PathLike[str]) -> KeyRing:
    """Load the named secrets of a key file; KeyFileError if unsafe or malformed."""
    key_path = Path(path)
    text = read_private_file(key_path)
    try:
        data = load_yaml(text)
    except DuplicateKeyError as exc:
        twice = exc.duplicates[0]
        raise KeyFileError(
            key_path,
            f"key {twice.path!r} given twice (lines {twice.first_line} and "
            f"{twice.line}); remove one",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise KeyFileError(key_path, f"{where}not valid YAML") from None  # no text echoed
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KeyFileError(key_path, "must be a mapping of key name to secret")
    secrets = {}
    for name, value in data.items():
        if not isinstance(name, str):
            raise KeyFileError(key_path, "key names must be strings")
        secrets[name] = Secret(name, _secret_bytes(key_path, name, value))
    return KeyRing(secrets, str(key_path))


def _secret_bytes(path: Path, name: str, value: object) -> bytes:
    if isinstance(value, str) and value:
        return value.encode()
    if isinstance(value, dict) and set(value) == {"hex"} and isinstance(value["hex"], str):
        try:
            raw = bytes.fromhex(value["hex"].removeprefix("0x"))
        except ValueError:
            raise KeyFileError(path, f"key {name!r}: hex value is not hex") from None
        if raw:
            return raw
    raise KeyFileError(path, f"key {name!r}: must be a non-empty string or {{hex: ...}}")
