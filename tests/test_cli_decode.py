"""`afbr decode tunnel-encap HEX`: the operator's view of the attribute codec."""

from __future__ import annotations

import io
import json

import pytest

from afbr.cli import main

# tests/vectors/tunnel-encap.txt #2 (GoBGP 3.10): GRE, key 7, protocol IPv4.
GRE_KEY_7 = "0002000a01040000000702020800"
EXPECTED_GRE_KEY_7 = {
    "tunnels": [
        {
            "type": 2,
            "name": "gre",
            "discarded": False,
            "sub_tlvs": [
                {"type": 1, "name": "encapsulation", "gre_key": 7},
                {
                    "type": 2,
                    "name": "protocol-type",
                    "ethertype": "0x0800",
                    "ethertype_name": "ipv4",
                },
            ],
        }
    ],
    "warnings": [],
}


@pytest.mark.parametrize(
    "words",
    [
        [GRE_KEY_7],
        ["0x" + GRE_KEY_7],
        ["0X" + GRE_KEY_7.upper()],
        ["0002 000a 0104 00000007 0202 0800"],
        ["0x0002", "000a", "01", "04", "00000007", "0202", "0800"],
    ],
)
def test_prints_the_attribute_as_indented_json(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["decode", "tunnel-encap", *words]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == EXPECTED_GRE_KEY_7
    assert captured.out == json.dumps(EXPECTED_GRE_KEY_7, indent=2) + "\n"
    assert captured.err == ""


def test_reads_standard_input_for_dash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"0x{GRE_KEY_7}\n"))
    assert main(["decode", "tunnel-encap", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED_GRE_KEY_7


def test_malformed_attribute_is_one_line_on_stderr_and_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The Protocol Type sub-TLV claims 9 octets; 2 are left in the TLV (RFC 9012 §13).
    assert main(["decode", "tunnel-encap", "0002000a01040000000702090800"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "afbr: tunnel-encap: offset 11: sub-TLV length 9 runs past the TLV end (2 left) "
        "(RFC 9012 §13: treat-as-withdraw)\n"
    )


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["00zz"], "not hexadecimal: 'z' in the input"),
        (["0002000"], "odd number of hex digits (7)"),
        (["0x"], "no hex digits given"),
    ],
)
def test_input_that_is_not_hex_is_status_2(
    words: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["decode", "tunnel-encap", *words]) == 2
    assert capsys.readouterr().err == f"afbr: tunnel-encap: {message}\n"


def test_warnings_go_to_stderr_and_json_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    # A GRE TLV with a 3-octet key (ignored, RFC 9012 §13) next to the GoBGP GRE TLV.
    assert main(["decode", "tunnel-encap", GRE_KEY_7 + "000200050103000001"]) == 0
    captured = capsys.readouterr()
    view = json.loads(captured.out)
    assert view["warnings"][0]["handling"] == "ignore-sub-tlv"
    assert view["tunnels"][1]["sub_tlvs"][0] == {
        "type": 1,
        "name": "encapsulation",
        "raw": True,
        "value": "000001",
    }
    assert captured.err == (
        "afbr: tunnel-encap: warning: offset 18: GRE Encapsulation sub-TLV of 3 octets, not 4 "
        "(RFC 9012 §13: ignore-sub-tlv)\n"
    )


def test_flags_option_checks_optional_transitive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "tunnel-encap", "--flags", "0xe0", GRE_KEY_7]) == 0
    capsys.readouterr()
    assert main(["decode", "tunnel-encap", "--flags", "0x80", GRE_KEY_7]) == 2
    assert capsys.readouterr().err == (
        "afbr: tunnel-encap: offset 0: attribute flags 0x80 lack Optional or Transitive "
        "(RFC 7606 §3: treat-as-withdraw)\n"
    )


def test_bad_flags_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["decode", "tunnel-encap", "--flags", "0x1ff", GRE_KEY_7])
    assert exit_info.value.code == 2
    assert "flags are one octet" in capsys.readouterr().err


def test_require_egress_endpoint_applies_the_unicast_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["decode", "tunnel-encap", "--require-egress-endpoint", GRE_KEY_7]) == 2
    assert capsys.readouterr().err == (
        "afbr: tunnel-encap: offset 0: Tunnel TLV has 0 Tunnel Egress Endpoint sub-TLVs, "
        "not exactly 1, and no other Tunnel TLV is valid (RFC 9012 §13: treat-as-withdraw)\n"
    )


def test_decode_without_a_kind_prints_help_and_is_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["decode"]) == 2
    assert "tunnel-encap" in capsys.readouterr().err


def test_missing_hex_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["decode", "tunnel-encap"])
    assert exit_info.value.code == 2
    assert "HEX" in capsys.readouterr().err


def test_help_reads_like_a_man_page(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["decode", "tunnel-encap", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for part in ("RFC 9012", "HEX", "exit status:", "examples:", "--flags", "treat-as-withdraw"):
        assert part in out


def test_top_level_help_lists_decode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "decode" in capsys.readouterr().out
