"""What `egress status` shows: read from the database and the state directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from accounting.collector_config import journal_root
from accounting.config import Config
from accounting.store import Store


@dataclass(frozen=True)
class ExporterStatus:
    address: str
    declared_name: str | None
    last_seen: datetime | None  # last datagram received
    datagrams_last_hour: int
    received_24h: int  # export sequence units received
    lost_24h: int  # and missing


@dataclass(frozen=True)
class CollectorStatus:
    database: str
    database_bytes: int
    journal_bytes: int
    last_flush: datetime | None
    flushes_24h: int
    flows_last_hour: int
    exporters: list[ExporterStatus] = field(default_factory=list)
    kernel_drops_24h: int = 0
    # Datagrams dropped by the collector in 24 h, by reason ("unknown_exporter:ADDRESS"
    # rows name the undeclared sources; "unknown_exporter" is their sum).
    dropped_24h: dict[str, int] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def collector_status(config: Config) -> CollectorStatus:
    now = datetime.now(UTC)
    db = config.storage.database
    journal_dir = journal_root(config.collector)
    journal_bytes = (
        sum(p.stat().st_size for p in journal_dir.rglob("*.seg")) if journal_dir.exists() else 0
    )
    names = {str(e.address): e.name for e in config.exporters}
    with Store.open(db, read_only=True, wait_seconds=15) as store:
        last_flush, flushes, flows_hour = store.con.execute(
            "SELECT max(ingested_at), count(*) FILTER (WHERE ingested_at >= ?),"
            " coalesce(sum(flows) FILTER (WHERE ingested_at >= ?), 0)"
            " FROM sources WHERE kind = 'collector'",
            [now - timedelta(hours=24), now - timedelta(hours=1)],
        ).fetchall()[0]
        seen = dict(store.con.execute("SELECT exporter, last_seen FROM exporters_seen").fetchall())
        day = store.exporter_counters_between(now - timedelta(hours=24), now + timedelta(hours=1))
        hour = store.exporter_counters_between(now - timedelta(hours=1), now + timedelta(hours=1))
        dropped = {
            reason: int(count)
            for reason, count in store.con.execute(
                "SELECT c.reason, sum(c.count)::BIGINT FROM source_counters c"
                " JOIN sources s USING (source_id)"
                " WHERE s.kind = 'collector' AND s.ingested_at >= ? AND c.kind = 'dropped'"
                " GROUP BY ALL ORDER BY 2 DESC, 1",
                [now - timedelta(hours=24)],
            ).fetchall()
        }

    def pick(frame, exporter, counter):
        sel = frame.filter((frame["exporter"] == exporter) & (frame["counter"] == counter))
        return (int(sel["value"][0]), sel["last_bin"][0]) if sel.height else (0, None)

    addresses = sorted(set(seen) | set(names))
    exporters = []
    for a in addresses:
        exporters.append(
            ExporterStatus(
                address=a,
                declared_name=names.get(a),
                last_seen=seen.get(a),
                datagrams_last_hour=pick(hour, a, "datagrams")[0],
                received_24h=pick(day, a, "sequence_received")[0],
                lost_24h=pick(day, a, "sequence_lost")[0],
            )
        )
    return CollectorStatus(
        database=str(db),
        database_bytes=db.stat().st_size if db.exists() else 0,
        journal_bytes=journal_bytes,
        last_flush=last_flush,
        flushes_24h=int(flushes or 0),
        flows_last_hour=int(flows_hour),
        exporters=exporters,
        kernel_drops_24h=pick(day, "*", "kernel_drops")[0],
        dropped_24h=dropped,
        now=now,
    )
