"""`afbr lab demo` is a command of the CLI, and its kernel check says what is missing."""

from __future__ import annotations

import pytest

from afbr.cli import main
from afbr.lab.demo_main import missing_kernel_features


def test_lab_demo_check_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    missing = missing_kernel_features()
    assert main(["lab", "demo", "--check-kernel"]) == (1 if missing else 0)
    out = capsys.readouterr().out
    if missing:
        assert out.startswith("the kernel lacks: ") and missing[0] in out
    else:
        assert "has everything" in out


def test_lab_demo_help_names_the_topology(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["lab", "demo", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "route reflector" in out and "--keep" in out and "--json" in out
