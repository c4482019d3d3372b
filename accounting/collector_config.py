"""The [collector] and [[exporters]] sections of egress.toml.

[collector] says how the service listens and flushes; [[exporters]] declares the routers
whose exports are accounted (the allow-list), with their sampling rate and uplinks.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accounting.validation import Validator, is_int

DEFAULT_LISTEN = ("0.0.0.0:2055", "[::]:2055", "0.0.0.0:4739", "[::]:4739")
MAX_IFINDEX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str  # an IP address literal ("0.0.0.0", "::", "127.0.0.1")
    port: int

    @property
    def family_v6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family_v6 else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    listen: tuple[ListenAddress, ...] = field(
        default_factory=lambda: tuple(parse_listen(a) for a in DEFAULT_LISTEN)
    )
    receive_buffer_bytes: int = 64 * 1024 * 1024
    flush_seconds: float = 10.0
    state_dir: Path = Path("egress-state")
    journal_dir: Path | None = None  # default: state_dir / "journal"
    allow_unknown_exporters: bool = False
    workers: int = 1
    metrics_listen: ListenAddress | None = None


def journal_root(c: CollectorConfig) -> Path:
    """Where the collector journals what it received and has not committed yet."""
    return c.journal_dir if c.journal_dir is not None else c.state_dir / "journal"


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    name: str
    sampling_rate: int | None = None  # used when the export does not carry a rate
    override_sampling: bool = False  # use sampling_rate even when the export carries one
    uplinks: tuple[int, ...] = ()  # when set, only flows crossing these ifIndexes are billed


def parse_listen(text: str) -> ListenAddress:
    """'0.0.0.0:2055', '[::]:4739', '127.0.0.1:9108' -> ListenAddress (ValueError if not)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT (IPv6 as [HOST]:PORT)")
    address = ipaddress.ip_address(host)
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"port {number} out of range 1-65535")
    return ListenAddress(str(address), number)


def parse_collector(v: Validator, raw: Any, config_path: Path) -> CollectorConfig:
    raw = v.table(raw if raw is not None else {}, "collector")
    allowed = {
        "listen",
        "receive_buffer_bytes",
        "flush_seconds",
        "state_dir",
        "journal_dir",
        "allow_unknown_exporters",
        "workers",
        "metrics_listen",
    }
    v.unknown_keys(raw, allowed, "collector")
    d = CollectorConfig()
    listen = d.listen
    if "listen" in raw:
        if not isinstance(raw["listen"], list) or not raw["listen"]:
            v.add(
                "collector.listen", "must be a non-empty list such as ['0.0.0.0:2055', '[::]:4739']"
            )
        else:
            parsed = []
            for i, text in enumerate(raw["listen"]):
                try:
                    parsed.append(parse_listen(str(text)))
                except ValueError as exc:
                    v.add(f"collector.listen[{i}]", str(exc))
            if len(set(parsed)) != len(parsed):
                v.add("collector.listen", "lists the same address twice")
            listen = tuple(parsed) or d.listen
    rcvbuf = raw.get("receive_buffer_bytes", d.receive_buffer_bytes)
    if not is_int(rcvbuf) or not 65_536 <= rcvbuf <= 2**31 - 1:
        v.add(
            "collector.receive_buffer_bytes",
            f"must be an integer from 65536 to 2147483647, got {rcvbuf!r}",
        )
        rcvbuf = d.receive_buffer_bytes
    flush = raw.get("flush_seconds", d.flush_seconds)
    if isinstance(flush, bool) or not isinstance(flush, int | float) or not 0.1 <= flush <= 3600:
        v.add(
            "collector.flush_seconds",
            f"must be a number of seconds from 0.1 to 3600, got {flush!r}",
        )
        flush = d.flush_seconds
    state_dir = raw.get("state_dir", str(d.state_dir))
    if not isinstance(state_dir, str) or not state_dir.strip():
        v.add("collector.state_dir", "must be a non-empty path string")
        state_dir = str(d.state_dir)
    state = Path(state_dir).expanduser()
    if not state.is_absolute():
        state = config_path.parent / state
    journal = raw.get("journal_dir")
    if journal is not None and (not isinstance(journal, str) or not journal.strip()):
        v.add("collector.journal_dir", "must be a non-empty path string")
        journal = None
    journal_dir = None
    if journal is not None:
        journal_dir = Path(journal).expanduser()
        if not journal_dir.is_absolute():
            journal_dir = config_path.parent / journal_dir
    allow = raw.get("allow_unknown_exporters", d.allow_unknown_exporters)
    if not isinstance(allow, bool):
        v.add("collector.allow_unknown_exporters", f"must be true or false, got {allow!r}")
        allow = d.allow_unknown_exporters
    workers = raw.get("workers", d.workers)
    if not is_int(workers) or not 1 <= workers <= 64:
        v.add("collector.workers", f"must be an integer from 1 to 64, got {workers!r}")
        workers = d.workers
    metrics = None
    if raw.get("metrics_listen"):
        try:
            metrics = parse_listen(str(raw["metrics_listen"]))
        except ValueError as exc:
            v.add("collector.metrics_listen", str(exc))
    return CollectorConfig(
        listen, rcvbuf, float(flush), state, journal_dir, allow, workers, metrics
    )


def parse_exporters(v: Validator, raw: Any) -> tuple[ExporterConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        v.add("exporters", "must be an array of tables: [[exporters]]")
        return ()
    out: list[ExporterConfig] = []
    seen: dict[Any, int] = {}
    for i, entry in enumerate(raw):
        where = f"exporters[{i}]"
        entry = v.table(entry, where)
        v.unknown_keys(
            entry, {"address", "name", "sampling_rate", "override_sampling", "uplinks"}, where
        )
        try:
            address = ipaddress.ip_address(str(entry.get("address", "")))
        except ValueError:
            v.add(
                f"{where}.address",
                f"must be the router's IPv4 or IPv6 address, got {entry.get('address')!r}",
            )
            continue
        if address.version == 6 and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address in seen:
            v.add(
                f"{where}.address", f"{address} is already declared as exporters[{seen[address]}]"
            )
            continue
        seen[address] = i
        name = entry.get("name", str(address))
        if not isinstance(name, str) or not name.strip():
            v.add(f"{where}.name", "must be a non-empty string")
            name = str(address)
        rate = entry.get("sampling_rate")
        if rate is not None and (not is_int(rate) or not 1 <= rate <= 2**31 - 1):
            v.add(
                f"{where}.sampling_rate", f"must be an integer >= 1 (1 = unsampled), got {rate!r}"
            )
            rate = None
        override = entry.get("override_sampling", False)
        if not isinstance(override, bool):
            v.add(f"{where}.override_sampling", f"must be true or false, got {override!r}")
            override = False
        if override and rate is None:
            v.add(f"{where}.override_sampling", "needs sampling_rate")
            override = False
        uplinks = entry.get("uplinks", [])
        if not isinstance(uplinks, list) or not all(
            is_int(u) and 0 <= u <= MAX_IFINDEX for u in uplinks
        ):
            v.add(
                f"{where}.uplinks",
                f"must be a list of interface indexes (ifIndex, 0-{MAX_IFINDEX}), got {uplinks!r}",
            )
            uplinks = []
        elif len(set(uplinks)) != len(uplinks):
            v.add(f"{where}.uplinks", "lists an interface twice")
            uplinks = sorted(set(uplinks))
        out.append(ExporterConfig(address, name, rate, override, tuple(uplinks)))
    return tuple(out)
