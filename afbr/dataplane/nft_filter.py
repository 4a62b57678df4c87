"""The nftables adapter: apply afbr's table atomically, read its counters.

One `nft -f -` per change (nft runs the whole script as one transaction: all or nothing);
the names of chains and counters to delete come from the kernel on first use and from what
this object applied afterwards.  Every failure of nft (a refusal, a timeout, no nft at all)
is an `NftError` carrying the reason.

`state()` reads what is installed (chains and counters, never the rules and their sets, which
with a full table run to megabytes): whether the table is there as it should be, and what it
counted.  It forks nft, so the daemon calls it from its reconcile worker, never on the loop.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from afbr.dataplane.nft_ruleset import FAMILY, TABLE, declared_objects, render_ruleset
from afbr.encap.model import FilterSpec


class NftError(RuntimeError):
    """nft refused a script or a listing; the message carries its stderr."""


@dataclass(frozen=True)
class CounterValue:
    packets: int
    bytes: int


@dataclass(frozen=True)
class FilterState:
    """afbr's table as read from the kernel: its chains and counters (empty: no table)."""

    chains: frozenset[str]
    counters: Mapping[str, CounterValue]

    def holds(self, filters: FilterSpec, *, named_counters: bool = True) -> bool:
        """Whether the table holds every chain (and counter object) `filters` declares."""
        chains, counters = declared_objects(filters, named_counters=named_counters)
        return chains <= self.chains and counters <= set(self.counters)


class NftFilter:
    """afbr's nftables table in one network namespace (None: the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._known: tuple[frozenset[str], frozenset[str]] | None = None
        self._applied: str | None = None
        self.named_counters = True  # False once the kernel turns out to lack nft_objref

    def _nft(
        self, args: Sequence[str], script: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        try:
            return subprocess.run(
                [*prefix, "nft", *args],
                input=script,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:  # no nft, or it hung
            raise NftError(f"nft {' '.join(args)}: {exc}") from exc

    def existing(self) -> tuple[frozenset[str], frozenset[str]]:
        """Names of the chains and counters now in afbr's table (empty when it is absent)."""
        proc = self._nft(["-j", "list", "table", FAMILY, TABLE])
        if proc.returncode != 0:
            if _no_table(proc.stderr):
                return frozenset(), frozenset()
            raise NftError(f"nft list table: {proc.stderr.strip()}")
        chains: set[str] = set()
        counters: set[str] = set()
        for item in _items(proc.stdout):
            if "chain" in item:
                chains.add(str(item["chain"]["name"]))
            elif "counter" in item:
                counters.add(str(item["counter"]["name"]))
        return frozenset(chains), frozenset(counters)

    def apply(self, filters: FilterSpec) -> bool:
        """Bring the table in step with `filters`; False when it already was (nothing run)."""
        if self._known is None:
            self._known = self.existing()
        script = render_ruleset(filters, *self._known, named_counters=self.named_counters)
        if script == self._applied:
            return False
        proc = self._nft(["-f", "-"], script)
        if proc.returncode != 0 and self.named_counters and _lacks_objref(proc.stderr):
            self.named_counters = False
            script = render_ruleset(filters, *self._known, named_counters=False)
            proc = self._nft(["-f", "-"], script)
        if proc.returncode != 0:
            self._known = None  # re-read next time: the transaction changed nothing
            raise NftError(f"nft -f: {proc.stderr.strip()}")
        self._known = _declared(script)
        # What the next render gives when nothing changed (no objects left to delete).
        self._applied = render_ruleset(filters, *self._known, named_counters=self.named_counters)
        return True

    def forget(self) -> None:
        """Read the kernel again and rewrite the table on the next `apply` (it was found
        changed behind our back)."""
        self._known, self._applied = None, None

    def state(self) -> FilterState:
        """The chains and counters now in afbr's table (two short listings, no rules)."""
        proc = self._nft(["-j", "list", "chains", FAMILY])
        if proc.returncode != 0:
            raise NftError(f"nft list chains: {proc.stderr.strip()}")
        chains = frozenset(
            str(item["chain"]["name"])
            for item in _items(proc.stdout)
            if "chain" in item and item["chain"].get("table") == TABLE
        )
        return FilterState(chains, self.counters())

    def counters(self) -> dict[str, CounterValue]:
        """afbr's counters by name (named objects, or inline ones by their rule's comment)."""
        if not self.named_counters:
            return self._inline_counters()
        proc = self._nft(["-j", "list", "counters", "table", FAMILY, TABLE])
        if proc.returncode != 0:
            if _no_table(proc.stderr):
                return {}  # before the first reconcile: nothing installed, nothing counted
            raise NftError(f"nft list counters: {proc.stderr.strip()}")
        found: dict[str, CounterValue] = {}
        for item in _items(proc.stdout):
            counter = item.get("counter")
            if isinstance(counter, dict):
                packets, size = counter.get("packets", 0), counter.get("bytes", 0)
                if isinstance(packets, int) and isinstance(size, int):
                    found[str(counter["name"])] = CounterValue(packets, size)
        return found

    def _inline_counters(self) -> dict[str, CounterValue]:
        proc = self._nft(["-j", "list", "table", FAMILY, TABLE])
        if proc.returncode != 0:
            if _no_table(proc.stderr):
                return {}
            raise NftError(f"nft list table: {proc.stderr.strip()}")
        found: dict[str, CounterValue] = {}
        for item in _items(proc.stdout):
            rule = item.get("rule")
            if not isinstance(rule, dict) or not isinstance(rule.get("comment"), str):
                continue
            name = str(rule["comment"])
            total = found.get(name, CounterValue(0, 0))
            for expr in rule.get("expr", ()):  # type: ignore[attr-defined]
                counter = expr.get("counter") if isinstance(expr, dict) else None
                if isinstance(counter, dict):
                    total = CounterValue(
                        total.packets + int(counter.get("packets", 0)),
                        total.bytes + int(counter.get("bytes", 0)),
                    )
            found[name] = total
        return found

    def remove(self) -> None:
        """Delete afbr's table (when the daemon is told to clean up)."""
        self._nft(["-f", "-"], f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
        self._known, self._applied = None, None


def _no_table(stderr: str) -> bool:
    """nft's answer when afbr's table does not exist (yet)."""
    return "No such file" in stderr


def _lacks_objref(stderr: str) -> bool:
    """nft's complaint when the kernel cannot reference a named counter from a rule."""
    return "Could not process rule: No such file or directory" in stderr and (
        "counter name" in stderr
    )


def _items(text: str) -> list[dict[str, dict[str, object]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NftError(f"nft -j printed no JSON: {exc}") from exc
    items = data.get("nftables", []) if isinstance(data, dict) else []
    return [item for item in items if isinstance(item, dict)]


def _declared(script: str) -> tuple[frozenset[str], frozenset[str]]:
    """Chains and counters the rendered script declares (its own format, see nft_ruleset)."""
    chains: set[str] = set()
    counters: set[str] = set()
    for line in script.splitlines():
        words = line.split()
        if len(words) >= 3 and line.startswith("\t") and not line.startswith("\t\t"):
            if words[0] == "chain":
                chains.add(words[1])
            elif words[0] == "counter":
                counters.add(words[1])
    return frozenset(chains), frozenset(counters)
