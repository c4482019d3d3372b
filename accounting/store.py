"""DuckDB, the system of record: schema, versioned migrations, and the few writes we do.

Tables (see docs/architecture.md for the full description):
- ``usage``: bytes/packets/flows per (bin_start, bucket, member_id, direction). ``bucket``
  is 'member', 'internal', 'unattributed' or 'not_uplink' (seen by a router whose declared
  uplinks it did not cross); ``member_id`` is '' outside 'member';
  ``direction`` is 'in' (towards the member), 'out' (from the member) or 'none'.
  Writes add to existing rows, so late flows for a past bin simply add up. The key is
  kept unique by the one write path (:meth:`Store._add_usage`), not by a PRIMARY KEY: the
  ART index behind a key cost 1.0 s per 580k-row commit against 0.2 s for an
  UPDATE + anti-join INSERT restricted to the incoming time range (zone maps prune the
  rest of the table, which is written in time order).
- ``sources``: one row per ingested capture, identified by the SHA-256 of its bytes, so a
  file ingested twice is recognised and not counted twice.
- ``source_counters``: what each source dropped or adjusted, by reason. A source is a
  capture file (``egress ingest``) or one flush of the live collector (``egress collect``).
- ``exporter_counters``: per exporter and bin: datagrams, flows, export sequence numbers
  received / lost / duplicated / reordered (the completeness of each router's data).
- ``invoices``: the operator's actual invoice per month, entered with ``egress invoice set``.
- ``registry_versions``: every member registry accepted, with when and why (see
  accounting/registry_history.py).
- ``exporters_seen``: when each exporter's datagrams were first and last received.
- ``collector_state``: per collector worker, the first journal segment not yet committed
  and the decoder state (templates, sampling rates) as of that point, committed in the
  same transaction as the usage it goes with.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from accounting.members import INTERNAL, NOT_UPLINK, UNATTRIBUTED, MemberTable
from accounting.usage import UsageRows
from collector.errors import EgressError

DIRECTIONS = ("in", "out", "none")

MIGRATIONS: list[tuple[str, str]] = [
    (
        "usage, sources and per-source counters",
        """
        CREATE SEQUENCE source_id_seq START 1;
        CREATE TABLE sources (
            source_id   INTEGER PRIMARY KEY DEFAULT nextval('source_id_seq'),
            kind        VARCHAR NOT NULL,
            name        VARCHAR NOT NULL,
            sha256      VARCHAR NOT NULL UNIQUE,
            size_bytes  BIGINT NOT NULL,
            ingested_at TIMESTAMPTZ NOT NULL,
            frames      BIGINT NOT NULL,
            datagrams   BIGINT NOT NULL,
            flows       BIGINT NOT NULL,
            first_flow  TIMESTAMPTZ,
            last_flow   TIMESTAMPTZ
        );
        CREATE TABLE source_counters (
            source_id INTEGER NOT NULL REFERENCES sources (source_id),
            kind      VARCHAR NOT NULL CHECK (kind IN ('dropped', 'note', 'skipped')),
            reason    VARCHAR NOT NULL,
            count     BIGINT NOT NULL,
            PRIMARY KEY (source_id, kind, reason)
        );
        CREATE TABLE usage (
            bin_start TIMESTAMPTZ NOT NULL,
            bucket    VARCHAR NOT NULL CHECK (bucket IN ('member', 'internal', 'unattributed', 'not_uplink')),
            member_id VARCHAR NOT NULL,
            direction VARCHAR NOT NULL CHECK (direction IN ('in', 'out', 'none')),
            bytes     BIGINT NOT NULL,
            packets   BIGINT NOT NULL,
            flows     BIGINT NOT NULL
        );
        """,
    ),
    (
        "per-exporter counters per bin, and the collector's checkpoint",
        """
        CREATE TABLE exporter_counters (
            bin_start TIMESTAMPTZ NOT NULL,
            exporter  VARCHAR NOT NULL,
            counter   VARCHAR NOT NULL,
            value     BIGINT NOT NULL
        );
        CREATE TABLE exporters_seen (
            exporter   VARCHAR PRIMARY KEY,
            first_seen TIMESTAMPTZ NOT NULL,
            last_seen  TIMESTAMPTZ NOT NULL,
            worker     VARCHAR NOT NULL   -- the collector worker that received it last
        );
        CREATE TABLE collector_state (
            name            VARCHAR PRIMARY KEY,
            journal_segment BIGINT NOT NULL,
            decoder_state   VARCHAR NOT NULL,
            committed_at    TIMESTAMPTZ NOT NULL
        );
        """,
    ),
    (
        "member registry versions",
        """
        CREATE SEQUENCE registry_version_seq START 1;
        CREATE TABLE registry_versions (
            version_id      INTEGER PRIMARY KEY DEFAULT nextval('registry_version_seq'),
            recorded_at     TIMESTAMPTZ NOT NULL,
            registry_sha256 VARCHAR NOT NULL,
            registry_json   VARCHAR NOT NULL,
            note            VARCHAR NOT NULL
        );
        """,
    ),
    (
        "operator invoices entered by hand",
        """
        CREATE TABLE invoices (
            month      VARCHAR PRIMARY KEY,
            cents      BIGINT NOT NULL CHECK (cents >= 0),
            entered_at TIMESTAMPTZ NOT NULL,
            note       VARCHAR NOT NULL
        );
        """,
    ),
]


class StoreError(EgressError):
    """The database cannot be opened or is not an egress database."""


class StoreBusy(StoreError):
    """Another process holds the database file's lock (a writer, or readers while we write)."""


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """What an ingested capture contributed (stored in ``sources``)."""

    kind: str
    name: str
    sha256: str
    size_bytes: int
    frames: int
    datagrams: int
    flows: int
    first_flow_ms: int | None
    last_flow_ms: int | None
    dropped: dict[str, int]
    notes: dict[str, int]
    skipped: dict[str, int]


USAGE_KEY = ("bin_start", "bucket", "member_id", "direction")
COUNTER_KEY = ("bin_start", "exporter", "counter")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a collector worker's journal stands, and its decoder state, as committed."""

    name: str
    journal_segment: int
    decoder_state: str  # JSON


class Store:
    """One open DuckDB connection with egress's schema."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con = con
        self.path = path

    @classmethod
    @contextmanager
    def open(
        cls, path: Path | str, *, read_only: bool = False, wait_seconds: float = 0.0
    ) -> Iterator[Store]:
        """Open (creating and migrating when writable) and close on exit.

        DuckDB lets one process write a file, and no other process read it meanwhile.
        ``egress collect`` holds the file only for the instant of a flush, so a caller
        that finds it busy may wait up to ``wait_seconds`` for it; after that StoreBusy.
        """
        path = Path(path)
        if read_only and not path.exists():
            raise StoreError(
                f"{path}: no such database (run 'egress ingest' or 'egress collect' first)"
            )
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only)
                break
            except duckdb.Error as exc:
                busy = "lock" in str(exc).lower()
                if busy and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                if busy:
                    raise StoreBusy(
                        f"{path}: the database is in use by another process (a long read-only"
                        f" session, or another writer): {exc}"
                    ) from None
                raise StoreError(f"{path}: cannot open the database: {exc}") from None
        store = cls(con, path)
        try:
            if read_only:
                store._check_schema()
            else:
                store.migrate()
            yield store
        finally:
            con.close()

    def _one(self, sql: str, params: list | None = None) -> tuple | None:
        """First row of a query; always consumes the whole result (DuckDB 2 requires it)."""
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0] if rows else None

    def schema_version(self) -> int:
        exists = self._one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        )[0]
        if not exists:
            return 0
        return int(self._one("SELECT coalesce(max(version), 0) FROM schema_migrations")[0])

    def _check_schema(self) -> None:
        version = self.schema_version()
        if version == 0:
            raise StoreError(f"{self.path}: not an egress database (no schema_migrations table)")
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: database schema {version} is newer than this egress ({len(MIGRATIONS)})"
            )

    def migrate(self) -> None:
        """Apply the migrations this database has not seen, each in its own transaction."""
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, description VARCHAR NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL)"
        )
        current = self.schema_version()
        if current > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: database schema {current} is newer than this egress ({len(MIGRATIONS)})"
            )
        for version, (description, sql) in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            self.con.execute("BEGIN TRANSACTION")
            try:
                self.con.execute(sql)
                self.con.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    [version, description, datetime.now(UTC)],
                )
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise

    def find_source(self, sha256: str) -> tuple[int, str, datetime] | None:
        """(source_id, name, ingested_at) of an already ingested source with this hash."""
        row = self._one(
            "SELECT source_id, name, ingested_at FROM sources WHERE sha256 = ?", [sha256]
        )
        return None if row is None else (row[0], row[1], row[2])

    def commit_source(
        self,
        source: SourceRecord,
        usage: pl.DataFrame,
        counters: pl.DataFrame | None = None,
        checkpoint: Checkpoint | None = None,
        seen: Mapping[str, tuple[int, int]] | None = None,
        worker: str = "",
    ) -> int:
        """Record a source with its usage, exporter counters, when exporters were seen
        (address -> (first, last) arrival ns) and (for the collector) its checkpoint,
        atomically. Returns the new source id."""
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            source_id = self._one(
                "INSERT INTO sources (kind, name, sha256, size_bytes, ingested_at, frames,"
                " datagrams, flows, first_flow, last_flow) VALUES (?,?,?,?,?,?,?,?,?,?)"
                " RETURNING source_id",
                [
                    source.kind,
                    source.name,
                    source.sha256,
                    source.size_bytes,
                    datetime.now(UTC),
                    source.frames,
                    source.datagrams,
                    source.flows,
                    _ms_to_datetime(source.first_flow_ms),
                    _ms_to_datetime(source.last_flow_ms),
                ],
            )[0]
            rows = [
                (source_id, kind, reason, int(count))
                for kind, table in (
                    ("dropped", source.dropped),
                    ("note", source.notes),
                    ("skipped", source.skipped),
                )
                for reason, count in sorted(table.items())
                if count
            ]
            if rows:
                con.executemany("INSERT INTO source_counters VALUES (?, ?, ?, ?)", rows)
            self._add(usage, "usage", USAGE_KEY, ("bytes", "packets", "flows"))
            if counters is not None:
                self._add(counters, "exporter_counters", COUNTER_KEY, ("value",))
            for exporter, (first, last) in sorted((seen or {}).items()):
                con.execute(
                    "INSERT INTO exporters_seen VALUES (?, ?, ?, ?) ON CONFLICT (exporter) DO UPDATE"
                    " SET last_seen = greatest(exporters_seen.last_seen, excluded.last_seen),"
                    " worker = excluded.worker",
                    [exporter, _ns_to_datetime(first), _ns_to_datetime(last), worker],
                )
            if checkpoint is not None:
                con.execute(
                    "INSERT OR REPLACE INTO collector_state VALUES (?, ?, ?, ?)",
                    [
                        checkpoint.name,
                        checkpoint.journal_segment,
                        checkpoint.decoder_state,
                        datetime.now(UTC),
                    ],
                )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        return int(source_id)

    def _add(
        self, frame: pl.DataFrame, table: str, key: tuple[str, ...], values: tuple[str, ...]
    ) -> None:
        """Add rows to an additive table: existing keys are incremented, new keys inserted.

        Runs inside the caller's transaction. The incoming time range bounds both
        statements so that DuckDB skips row groups outside it.
        """
        if frame.height == 0:
            return
        lo, hi = frame["bin_start"].min(), frame["bin_start"].max()
        match = " AND ".join(f"u.{k} = i.{k}" for k in key)
        increments = ", ".join(f"{v} = u.{v} + i.{v}" for v in values)
        columns = ", ".join(f"i.{c}" for c in (*key, *values))
        self.con.register("incoming_rows", frame)
        try:
            self.con.execute(
                f"UPDATE {table} AS u SET {increments} FROM incoming_rows AS i WHERE {match}"
                " AND u.bin_start BETWEEN ? AND ?",
                [lo, hi],
            )
            self.con.execute(
                f"INSERT INTO {table} SELECT {columns} FROM incoming_rows AS i"
                f" ANTI JOIN (SELECT * FROM {table} WHERE bin_start BETWEEN ? AND ?) AS u ON {match}",
                [lo, hi],
            )
        finally:
            self.con.unregister("incoming_rows")

    def load_checkpoint(self, name: str) -> Checkpoint | None:
        row = self._one(
            "SELECT name, journal_segment, decoder_state FROM collector_state WHERE name = ?",
            [name],
        )
        return None if row is None else Checkpoint(row[0], int(row[1]), row[2])

    def checkpoints(self) -> list[Checkpoint]:
        rows = self.con.execute(
            "SELECT name, journal_segment, decoder_state FROM collector_state ORDER BY name"
        ).fetchall()
        return [Checkpoint(r[0], int(r[1]), r[2]) for r in rows]

    def invoice_for(self, month: str) -> int | None:
        """The operator's actual invoice for a month (YYYY-MM), in cents, if entered."""
        row = self._one("SELECT cents FROM invoices WHERE month = ?", [month])
        return None if row is None else int(row[0])

    def set_invoice(self, month: str, cents: int, note: str = "") -> int | None:
        """Enter (or replace) a month's actual invoice; returns the previous figure."""
        previous = self.invoice_for(month)
        self.con.execute(
            "INSERT OR REPLACE INTO invoices VALUES (?, ?, ?, ?)",
            [month, cents, datetime.now(UTC), note],
        )
        return previous

    def exporter_counters_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Per exporter and counter name, sums over [start, end)."""
        return self.con.sql(
            "SELECT exporter, counter, sum(value)::BIGINT AS value, max(bin_start) AS last_bin"
            " FROM exporter_counters WHERE bin_start >= ? AND bin_start < ? GROUP BY ALL ORDER BY ALL",
            params=[start, end],
        ).pl()

    def usage_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Usage rows with start <= bin_start < end, as a polars DataFrame."""
        return self.con.sql(
            "SELECT bin_start, bucket, member_id, direction, bytes, packets, flows FROM usage"
            " WHERE bin_start >= ? AND bin_start < ? ORDER BY bin_start, bucket, member_id, direction",
            params=[start, end],
        ).pl()

    def counters_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Drop/adjustment counters of sources whose flows overlap [start, end), or that
        carried no flow at all and were committed in it (e.g. a flush of garbage only)."""
        return self.con.sql(
            "SELECT c.kind, c.reason, sum(c.count)::BIGINT AS count FROM source_counters c"
            " JOIN sources s USING (source_id)"
            " WHERE (s.last_flow >= ? AND s.first_flow < ?)"
            " OR (s.first_flow IS NULL AND s.ingested_at >= ? AND s.ingested_at < ?)"
            " GROUP BY ALL ORDER BY ALL",
            params=[start, end, start, end],
        ).pl()

    def data_range(self) -> tuple[datetime, datetime] | None:
        row = self._one("SELECT min(bin_start), max(bin_start) FROM usage")
        return None if row[0] is None else (row[0], row[1])


def usage_frame(rows: UsageRows, table: MemberTable) -> pl.DataFrame:
    """UsageRows (owner rows as integers) to the labelled frame the ``usage`` table takes."""
    n_members = table.size
    labels = np.array([*table.ids, "", "", ""], dtype=object)
    buckets = np.array(["member"] * n_members + [INTERNAL, UNATTRIBUTED, NOT_UPLINK], dtype=object)
    owner = rows.owner.astype(np.int64)
    return pl.DataFrame(
        {
            "bin_start": pl.Series(rows.bin_start_ms, dtype=pl.Int64)
            .cast(pl.Datetime("ms"))
            .dt.replace_time_zone("UTC"),
            "bucket": pl.Series(buckets[owner].tolist(), dtype=pl.String),
            "member_id": pl.Series(labels[owner].tolist(), dtype=pl.String),
            "direction": pl.Series(
                np.array(DIRECTIONS, dtype=object)[rows.direction].tolist(), dtype=pl.String
            ),
            "bytes": rows.bytes,
            "packets": rows.packets,
            "flows": rows.flows,
        }
    )


def counters_frame(counters: Mapping[tuple[int, str, str], int]) -> pl.DataFrame:
    """{(bin start ms, exporter, counter): value} -> the frame ``exporter_counters`` takes."""
    keys = list(counters)
    return pl.DataFrame(
        {
            "bin_start": pl.Series([k[0] for k in keys], dtype=pl.Int64)
            .cast(pl.Datetime("ms"))
            .dt.replace_time_zone("UTC"),
            "exporter": pl.Series([k[1] for k in keys], dtype=pl.String),
            "counter": pl.Series([k[2] for k in keys], dtype=pl.String),
            "value": pl.Series([int(counters[k]) for k in keys], dtype=pl.Int64),
        }
    )


def _ns_to_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)
