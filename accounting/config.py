"""The egress.toml configuration: parsing and validation into frozen dataclasses.

Validation collects every problem before failing, each naming its key and the reason, so
that one run of ``egress members check`` lists everything to fix.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from accounting.collector_config import (
    CollectorConfig,
    ExporterConfig,
    parse_collector,
    parse_exporters,
)
from accounting.registry import MemberConfig, Registry, parse_registry
from accounting.validation import Validator, euros_to_cents, is_int
from collector.errors import EgressError

DEFAULT_CONFIG = "egress.toml"
CONFIG_ENV = "EGRESS_CONFIG"
DIRECTION_RULES = ("max", "sum", "in", "out")
MEMBER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(EgressError):
    """The configuration cannot be used; ``problems`` lists every reason."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the configuration:\n{lines}")


@dataclass(frozen=True, slots=True)
class StorageConfig:
    database: Path


@dataclass(frozen=True, slots=True)
class BillingConfig:
    timezone: str = "Europe/Paris"
    bin_seconds: int = 300
    percentile: int = 95
    direction: str = "max"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class ContractConfig:
    monthly_cents: int


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    storage: StorageConfig
    billing: BillingConfig
    contract: ContractConfig
    registry: Registry
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    exporters: tuple[ExporterConfig, ...] = ()

    @property
    def members(self) -> tuple[MemberConfig, ...]:
        return self.registry.members


def resolve_config_path(option: str | None) -> Path:
    """--config, else $EGRESS_CONFIG, else ./egress.toml."""
    return Path(option or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: Path | str) -> Config:
    """Read and validate a TOML configuration file (raises ConfigError)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, ["file not found (use --config PATH or EGRESS_CONFIG)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"cannot be read: {exc}"]) from None
    return parse_config(text, path)


def parse_config(text: str, path: Path | str = DEFAULT_CONFIG) -> Config:
    """Validate configuration text; relative paths resolve against the file's folder."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    v = Validator()
    v.unknown_keys(
        raw, {"storage", "billing", "contract", "members", "registry", "collector", "exporters"}, ""
    )
    storage = _storage(v, raw.get("storage", {}), path)
    billing = _billing(v, raw.get("billing", {}))
    contract = _contract(v, raw.get("contract"))
    collector = parse_collector(v, raw.get("collector"), path)
    exporters = parse_exporters(v, raw.get("exporters"))
    registry = parse_registry(
        v, raw.get("members", []), raw.get("registry"), path, {e.address for e in exporters}
    )
    if v.problems:
        raise ConfigError(path, v.problems)
    return Config(path, storage, billing, contract, registry, collector, exporters)


def _storage(v: Validator, raw: Any, path: Path) -> StorageConfig:
    raw = v.table(raw, "storage")
    v.unknown_keys(raw, {"database"}, "storage")
    database = raw.get("database", "egress.duckdb")
    if not isinstance(database, str) or not database.strip():
        v.add("storage.database", "must be a non-empty path string")
        database = "egress.duckdb"
    db = Path(database).expanduser()
    if not db.is_absolute():
        db = path.parent / db
    return StorageConfig(db)


def _billing(v: Validator, raw: Any) -> BillingConfig:
    raw = v.table(raw, "billing")
    v.unknown_keys(raw, {"timezone", "bin_seconds", "percentile", "direction"}, "billing")
    d = BillingConfig()
    tz = raw.get("timezone", d.timezone)
    if not isinstance(tz, str):
        v.add("billing.timezone", "must be a string such as 'Europe/Paris'")
        tz = d.timezone
    else:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            v.add(
                "billing.timezone",
                f"unknown time zone {tz!r} (use an IANA name such as 'Europe/Paris')",
            )
            tz = d.timezone
    bin_seconds = raw.get("bin_seconds", d.bin_seconds)
    if not is_int(bin_seconds) or bin_seconds <= 0 or 3600 % bin_seconds:
        v.add(
            "billing.bin_seconds",
            f"must be a whole number of seconds dividing 3600, got {bin_seconds!r}",
        )
        bin_seconds = d.bin_seconds
    percentile = raw.get("percentile", d.percentile)
    if not is_int(percentile) or not 1 <= percentile <= 100:
        v.add("billing.percentile", f"must be a whole number from 1 to 100, got {percentile!r}")
        percentile = d.percentile
    direction = raw.get("direction", d.direction)
    if direction not in DIRECTION_RULES:
        v.add(
            "billing.direction", f"must be one of {', '.join(DIRECTION_RULES)}, got {direction!r}"
        )
        direction = d.direction
    return BillingConfig(tz, bin_seconds, percentile, direction)


def _contract(v: Validator, raw: Any) -> ContractConfig:
    if raw is None:
        v.add("contract", "missing table: give [contract] monthly_eur = <invoice amount>")
        return ContractConfig(0)
    raw = v.table(raw, "contract")
    v.unknown_keys(raw, {"monthly_eur"}, "contract")
    if "monthly_eur" not in raw:
        v.add("contract.monthly_eur", "missing: the operator's monthly invoice in euros")
        return ContractConfig(0)
    return ContractConfig(euros_to_cents(v, "contract.monthly_eur", raw["monthly_eur"]))
