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
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from accounting.collector_config import (
    CollectorConfig,
    ExporterConfig,
    parse_collector,
    parse_exporters,
)
from accounting.contract import ContractModel, MemberTerms, check_terms
from accounting.registry import MemberConfig, Registry, parse_registry
from accounting.sharing import Semantics, SharingPolicy
from accounting.validation import Validator, is_int
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
    missing: str = "exclude"  # bins without data: excluded from n, or counted as zero

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    storage: StorageConfig
    billing: BillingConfig
    contract: ContractModel
    registry: Registry
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    exporters: tuple[ExporterConfig, ...] = ()
    sharing: SharingPolicy = field(default_factory=SharingPolicy)

    @property
    def members(self) -> tuple[MemberConfig, ...]:
        return self.registry.members

    @property
    def semantics(self) -> Semantics:
        """The billing semantics every report states (see accounting/sharing.py)."""
        b = self.billing
        return Semantics(b.percentile, b.direction, b.missing, b.bin_seconds)

    def member_terms(self) -> dict[str, MemberTerms]:
        """What billing needs of each member besides its traffic."""
        return {m.id: terms_of(m) for m in self.members}


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
        raw,
        {
            "storage",
            "billing",
            "contract",
            "sharing",
            "members",
            "registry",
            "collector",
            "exporters",
        },
        "",
    )
    storage = _storage(v, raw.get("storage", {}), path)
    billing = _billing(v, raw.get("billing", {}))
    contract = _contract(v, raw.get("contract"))
    collector = parse_collector(v, raw.get("collector"), path)
    exporters = parse_exporters(v, raw.get("exporters"))
    registry = parse_registry(
        v, raw.get("members", []), raw.get("registry"), path, {e.address for e in exporters}
    )
    sharing, problems = SharingPolicy.from_mapping(raw.get("sharing"))
    v.problems += problems
    v.problems += check_terms(
        contract,
        {m.id: terms_of(m) for m in registry.members},
        {m.id: f"members (id {m.id!r})" for m in registry.members},
    )
    if v.problems:
        raise ConfigError(path, v.problems)
    return Config(path, storage, billing, contract, registry, collector, exporters, sharing)


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
    v.unknown_keys(
        raw, {"timezone", "bin_seconds", "percentile", "direction", "missing"}, "billing"
    )
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
    missing = raw.get("missing", d.missing)
    if missing not in ("exclude", "zero"):
        v.add("billing.missing", f"must be 'exclude' or 'zero', got {missing!r}")
        missing = d.missing
    return BillingConfig(tz, bin_seconds, percentile, direction, missing)


def _contract(v: Validator, raw: Any) -> ContractModel:
    if raw is None:
        v.add("contract", "missing table: give [contract] monthly_eur = <invoice amount>")
        return ContractModel()
    raw = v.table(raw, "contract")
    if "monthly_eur" not in raw:
        v.add("contract.monthly_eur", "missing: the operator's monthly invoice in euros")
        return ContractModel()
    model, problems = ContractModel.from_mapping(raw)
    v.problems += problems
    return model


def terms_of(m: MemberConfig) -> MemberTerms:
    """A registry member's billing attributes, as the sharing code takes them."""
    subscribed = None if m.subscribed_mbps is None else Fraction(str(m.subscribed_mbps))
    return MemberTerms(m.id, m.population, subscribed, m.flat_monthly_cents)
