"""strongSwan with strongSwan for bench/ike_setup.py: two charons driven over VICI.

A minimal VICI client (the protocol of strongSwan's src/libcharon/plugins/vici/README.md:
4-byte length-prefixed packets; a type byte; named commands and events; sections, key/values
and lists) sends `initiate` requests that return at once (timeout -1) and counts the
`child-updown` events of the initiator: one per IKE SA + first CHILD SA established.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

from ike_setup import ProposalSet, Result

from afbr.lab.netns import Host, Lab

CMD_REQUEST, CMD_RESPONSE, CMD_UNKNOWN = 0, 1, 2
EVENT_REGISTER, EVENT_CONFIRM, EVENT = 3, 5, 7
KEY_VALUE, SECTION_START, SECTION_END = 3, 1, 2

PLUGINS = (
    "random nonce openssl pem pkcs1 pkcs8 pubkey kdf kernel-libipsec kernel-netlink "
    "socket-default vici"
)
STRONGSWAN_CONF = """charon-systemd {{
    load = {plugins}
    install_routes = no
    reuse_ikesa = no
    dos_protection = no
    init_limit_half_open = 0
    ikesa_table_size = 4096
    threads = 32
    plugins {{
        vici {{
            socket = unix://{d}/charon.vici
        }}
    }}
    filelog {{
        log {{
            path = {d}/charon.log
            default = {level}
            flush_line = yes
        }}
    }}
}}
"""

SWANCTL_CONF = """connections {{
    bench {{
        version = 2
        local_addrs = {me}
        remote_addrs = {peer}
        proposals = {ike}
        unique = never
        local {{
            auth = psk
            id = {my_id}
        }}
        remote {{
            auth = psk
            id = {peer_id}
        }}
        children {{
            net {{
                mode = tunnel
                local_ts = {my_ts}
                remote_ts = {peer_ts}
                esp_proposals = {esp}
                start_action = none
            }}
        }}
    }}
}}
secrets {{
    ike-ab {{
        id-a = a.example
        id-b = b.example
        secret = 0x0123456789abcdef0123456789abcdef
    }}
}}
"""


def _name(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw)]) + raw


def encode_message(items: dict[str, str]) -> bytes:
    out = b""
    for key, value in items.items():
        raw = value.encode()
        out += bytes([KEY_VALUE]) + _name(key) + struct.pack("!H", len(raw)) + raw
    return out


class Vici:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buffer = b""

    def send(self, kind: int, name: str | None, body: bytes = b"") -> None:
        payload = bytes([kind]) + (_name(name) if name is not None else b"") + body
        self.sock.sendall(struct.pack("!I", len(payload)) + payload)

    def receive(self) -> tuple[int, str]:
        """One packet: its type and, for events, its name (the body is not needed here)."""
        while (
            len(self.buffer) < 4 or len(self.buffer) < 4 + struct.unpack_from("!I", self.buffer)[0]
        ):
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("VICI socket closed")
            self.buffer += chunk
        (length,) = struct.unpack_from("!I", self.buffer)
        packet, self.buffer = self.buffer[4 : 4 + length], self.buffer[4 + length :]
        name = ""
        if packet[0] == EVENT:
            name = packet[2 : 2 + packet[1]].decode()
        return packet[0], name


class BenchCharon:
    def __init__(self, host: Host, me: str, peer: str, ps: ProposalSet, initiator: bool) -> None:
        self.dir = Path("/tmp") / f"afbr-bench-{host.name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "strongswan.conf").write_text(
            STRONGSWAN_CONF.format(
                plugins=PLUGINS, d=self.dir, level=os.environ.get("AFBR_BENCH_LOG", "0")
            )
        )
        ids = ("a.example", "b.example") if initiator else ("b.example", "a.example")
        ts = ("198.51.100.1/32", "203.0.113.1/32")
        ts = ts if initiator else (ts[1], ts[0])
        ts = (
            ("198.51.100.1/32", "203.0.113.1/32")
            if initiator
            else ("203.0.113.1/32", "198.51.100.1/32")
        )
        (self.dir / "swanctl.conf").write_text(
            SWANCTL_CONF.format(
                me=me,
                peer=peer,
                ike=ps.swan_ike,
                esp=ps.swan_esp,
                my_id=ids[0],
                peer_id=ids[1],
                my_ts=ts[0],
                peer_ts=ts[1],
            )
        )
        env = {"STRONGSWAN_CONF": str(self.dir / "strongswan.conf")}
        script = (
            "mount --make-rprivate / && mount -t tmpfs tmpfs /run && exec /usr/sbin/charon-systemd"
        )
        self.proc = host.popen("unshare", "-m", "sh", "-c", script, env=env)
        vici = self.dir / "charon.vici"
        deadline = time.monotonic() + 30
        while not vici.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("charon did not start")
            time.sleep(0.1)
        subprocess.run(
            host.argv(
                "swanctl",
                "--load-all",
                "--file",
                str(self.dir / "swanctl.conf"),
                "--uri",
                f"unix://{vici}",
            ),
            check=True,
            capture_output=True,
            env={**os.environ, **env},
            timeout=30,
        )
        self.vici_path = str(vici)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_strongswan(ps: ProposalSet, n: int, concurrency: int) -> Result:
    with Lab("bench") as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, "eth0", b, "eth0")
        a.ip_batch(["addr add 192.0.2.1/24 dev eth0", "addr add 198.51.100.1/32 dev lo"])
        b.ip_batch(["addr add 192.0.2.2/24 dev eth0", "addr add 203.0.113.1/32 dev lo"])
        responder = BenchCharon(b, "192.0.2.2", "192.0.2.1", ps, initiator=False)
        initiator = BenchCharon(a, "192.0.2.1", "192.0.2.2", ps, initiator=True)
        vici = Vici(initiator.vici_path)
        vici.sock.settimeout(10.0)  # a stalled peer ends the measurement, never hangs it
        vici.send(EVENT_REGISTER, "child-updown")
        while vici.receive()[0] != EVENT_CONFIRM:
            pass
        request = encode_message({"child": "net", "ike": "bench", "timeout": "-1"})
        cpu0 = initiator.cpu_seconds() + responder.cpu_seconds()
        wall0 = time.perf_counter()
        started = established = pending = 0
        deadline = time.monotonic() + 60 + n / 20
        while established < n and time.monotonic() < deadline:
            while started < n and started - established < concurrency:
                vici.send(CMD_REQUEST, "initiate", request)
                started += 1
                pending += 1
            try:
                kind, name = vici.receive()
            except TimeoutError:
                break
            if kind == CMD_RESPONSE:
                pending -= 1
            elif kind == EVENT and name == "child-updown":
                established += 1
        wall = time.perf_counter() - wall0
        cpu = initiator.cpu_seconds() + responder.cpu_seconds() - cpu0
        for charon in (initiator, responder):
            shutil.rmtree(charon.dir, ignore_errors=True)
        return Result("strongswan", ps.name, established, wall, cpu)
