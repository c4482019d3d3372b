"""`egress collect`: the long-running collector of one worker.

Loop: receive a batch from the sockets -> append it to the journal -> decode and attribute
(the shared Pipeline) -> every ``flush_seconds``: rotate the journal, and commit in one
DuckDB transaction the usage, the per-exporter counters, and the checkpoint (the first
journal segment not yet accounted, with the decoder's templates and sampling rates). The
commit runs on a thread of its own while receiving goes on: opening, writing and closing
the database can take longer than the socket buffer lasts at a high rate.

Why this survives what it must (see docs/architecture.md):
- kill -9: everything read from the sockets is in the journal; at start the segments
  from the committed checkpoint are replayed with the committed decoder state, so the
  result is the same as if the process had never stopped (no loss, no double count);
- readers: the database is opened only for the instant of a flush. If a reader holds it
  the commit is retried at the next flush: the harvest stays in memory, the journal keeps
  everything, nothing is lost;
- SIGTERM/SIGINT: stop receiving, flush, exit; SIGHUP: flush with the old rules, then load
  the new configuration (an invalid one is refused and logged; the old one stays).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import polars as pl

from accounting.attribution import attribute
from accounting.attribution_inplace import attribute_in_place
from accounting.collector_config import journal_root
from accounting.config import Config, ConfigError, load_config
from accounting.exporters import UplinkTable
from accounting.members import MemberTable, compile_members, compile_registry
from accounting.pipeline import Harvest, Pipeline
from accounting.registry_history import PastChangeRefused, record_registry
from accounting.store import (
    Checkpoint,
    SourceRecord,
    Store,
    StoreError,
    counters_frame,
    usage_frame,
)
from accounting.usage import UsageAccumulator, UsageRows
from collector.decode import Decoder
from collector.journal import Journal
from collector.listen import MAX_BATCH_DATAGRAMS, Endpoint, UdpListener
from collector.metrics import Metrics
from collector.spare_reserve import SpareReserve
from collector.warmup import sample_datagrams

log = logging.getLogger("egress.collect")
# The receive loop journals and decodes each batch before the next receive (decoders copy
# what they keep, e.g. data waiting for a template), so one packed buffer is enough; the
# same warm buffer each time cost 3-5 points less CPU at 170,000 v5 datagrams/s than a
# ring of four (measured live, two rounds).
SERVICE_PACKED_RING = 1


@dataclass
class _Pending:
    """What was harvested but not yet committed (a failed flush keeps it for the next)."""

    usage: list[pl.DataFrame] = field(default_factory=list)  # labelled when harvested
    counters: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    datagrams: int = 0
    flows: int = 0
    first_flow_ms: int | None = None
    last_flow_ms: int | None = None
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, h: Harvest, table: MemberTable) -> None:
        # Label rows with the member table that attributed them: a reload may change it
        # before this is committed.
        self.usage.append(usage_frame(h.usage, table))
        self.counters.update(h.counters)
        self.dropped.update(h.dropped)
        self.dropped.update({f"unknown_exporter:{a}": c for a, c in h.unknown_exporters.items()})
        self.notes.update(h.notes)
        self.datagrams += h.datagrams
        self.flows += h.flows
        for label, (first, last) in h.seen.items():
            was = self.seen.get(label)
            self.seen[label] = (
                (first, last) if was is None else (min(was[0], first), max(was[1], last))
            )
        for attr, pick in (("first_flow_ms", min), ("last_flow_ms", max)):
            new = getattr(h, attr)
            if new is not None:
                old = getattr(self, attr)
                setattr(self, attr, new if old is None else pick(old, new))

    @property
    def empty(self) -> bool:
        return not (self.datagrams or self.counters or self.dropped)


@dataclass(frozen=True)
class _InFlight:
    """A flush whose commit runs on the commit thread."""

    future: Future
    payload: FlushPayload
    started: float
    prepared: float  # when the payload was ready (receiving stood still until then)


@dataclass(frozen=True)
class FlushPayload:
    """One worker's flush: what a committer writes in one transaction (picklable, so a
    worker process can hand it to the process that owns the database)."""

    worker: str
    datagrams: int
    flows: int
    first_flow_ms: int | None
    last_flow_ms: int | None
    dropped: dict[str, int]
    notes: dict[str, int]
    usage: pl.DataFrame
    counters: dict[tuple[int, str, str], int]
    seen: dict[str, tuple[int, int]]
    checkpoint: Checkpoint


def commit_payload(store: Store, p: FlushPayload) -> None:
    """Write one flush: a 'collector' source with its counters, usage and checkpoint."""
    store.commit_source(
        SourceRecord(
            kind="collector",
            name=f"{p.worker} flush",
            sha256=f"flush:{uuid.uuid4()}",
            size_bytes=0,
            frames=0,
            datagrams=p.datagrams,
            flows=p.flows,
            first_flow_ms=p.first_flow_ms,
            last_flow_ms=p.last_flow_ms,
            dropped=p.dropped,
            notes=p.notes,
            skipped={},
        ),
        p.usage,
        counters_frame(p.counters),
        p.checkpoint,
        seen=p.seen,
        worker=p.worker,
    )


class Committer(Protocol):
    def __call__(self, payload: FlushPayload, wait_seconds: float) -> str | None:
        """Commit; None when done, else why not (the caller keeps the data and retries)."""

    def warm_up(self, usage: pl.DataFrame) -> None:
        """Before receiving: load in this process what a first commit of ``usage`` needs
        (nothing is written)."""


class DirectCommitter:
    """Commits in this process (the one-worker collector)."""

    def __init__(self, database: Path) -> None:
        self.database = database

    def __call__(self, payload: FlushPayload, wait_seconds: float) -> str | None:
        try:
            with Store.open(self.database, wait_seconds=wait_seconds) as store:
                commit_payload(store, payload)
        except StoreError as exc:
            return str(exc)
        return None

    def warm_up(self, usage: pl.DataFrame) -> None:
        warm_up_commit(usage)


COMMIT_NICE = 19


def _lowest_priority() -> None:
    """Run the calling thread (and the threads it starts, such as DuckDB's) at the lowest
    CPU priority: a commit then uses the time receiving leaves, instead of taking the core
    for the ~0.3 s it needs while datagrams pile up in the socket buffer (at 200,000/s
    a 64 MiB buffer holds ~0.3 s). Linux gives each thread its own nice value."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COMMIT_NICE)


def load_kernels(table: MemberTable, bin_ms: int) -> UsageRows:
    """Call every kernel of the receive path once, on sample datagrams, with the argument
    types it meets live. numba compiles one machine code per signature, and a read-only
    buffer (journal replay, captures) is another type than a writable one (the listener's):
    a collector warmed up only with the first compiled the second on its first live
    batch, 19 s with datagrams waiting (seen in a fresh checkout's accuracy benchmark).
    Returns the samples' usage (for :func:`warm_up_commit`)."""
    samples = sample_datagrams(MAX_BATCH_DATAGRAMS)
    rows = UsageRows.empty()
    for batch in (samples, dataclasses.replace(samples, buffer=samples.buffer.copy())):
        usage = UsageAccumulator(bin_ms)
        result = Decoder(bin_ms=bin_ms).decode(batch)
        usage.add(
            attribute(
                result.flows, table, bin_ms=bin_ms, notes=Counter(), exporters=result.exporters
            )
        )
        in_place = Decoder(bin_ms=bin_ms).decode(batch, in_place=True)
        for sets in in_place.in_place:
            attribute_in_place(
                sets,
                table,
                bin_ms=bin_ms,
                notes=Counter(),
                uplinks=UplinkTable.none(len(in_place.exporters)),
                into=usage,
                n_exporters=len(in_place.exporters),
            )
        rows = usage.rows()
    return rows


def warm_up_commit(usage: pl.DataFrame) -> None:
    """Commit a scratch flush of ``usage`` into a database in memory (nothing is kept), so
    that what a first commit loads (pyarrow for registering a frame with DuckDB: ~0.16 s
    here, DuckDB's scan of it) is loaded before receiving. Commits run on a thread of the
    receiving process at the lowest priority, but an import holds the GIL: the receiving
    thread waited 250 ms for the first commit's (off-CPU trace at 205,000 IPFIX/s, the
    socket buffer holds ~0.25 s)."""
    label = "192.0.2.1"  # documentation address (RFC 5737), never an exporter here
    payload = FlushPayload(
        worker="warm-up",
        datagrams=1,
        flows=1,
        first_flow_ms=0,
        last_flow_ms=0,
        dropped={"warm_up": 1},
        notes={"warm_up": 1},
        usage=usage,
        counters={(0, label, "datagrams"): 1},
        seen={label: (0, 0)},
        checkpoint=Checkpoint("warm-up", 1, "{}"),
    )
    with Store.open(":memory:") as store:
        commit_payload(store, payload)


class CollectorService:
    """One receiving, decoding and committing worker (see module docstring)."""

    def __init__(
        self,
        config: Config,
        *,
        name: str = "worker-0",
        listener: UdpListener | None = None,
        metrics: Metrics | None = None,
        committer: Committer | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.committer = committer or DirectCommitter(config.storage.database)
        self.metrics = metrics or Metrics()
        self.table: MemberTable = compile_registry(config.registry, config.billing.timezone)
        self.decoder = Decoder(bin_ms=config.billing.bin_seconds * 1000)
        self.pipeline = Pipeline(config, self.table, decoder=self.decoder)
        self.journal = Journal(journal_root(config.collector) / name)
        self.spares = SpareReserve(self.journal, config.collector.flush_seconds)
        self.listener = listener or UdpListener(
            [Endpoint(a.host, a.port) for a in config.collector.listen],
            receive_buffer_bytes=config.collector.receive_buffer_bytes,
            reuse_port=config.collector.workers > 1,
            packed_ring=SERVICE_PACKED_RING,
        )
        self.pending = _Pending()
        self.kernel_drops_seen = self.listener.kernel_drops()
        self.truncated_seen = 0
        self.last_flush_ok: float | None = None
        self.busy_since: float | None = None
        # One commit at a time, off the receiving thread (see start_background_flush).
        self._commit_thread = ThreadPoolExecutor(
            1, thread_name_prefix="egress-commit", initializer=_lowest_priority
        )
        self.inflight: _InFlight | None = None

    # -- start-up ----------------------------------------------------------------------
    def recover(self) -> int:
        """Restore the committed decoder state and replay the journal after it.

        Returns the number of datagrams replayed (0 after a clean stop).
        """
        with Store.open(self.config.storage.database, wait_seconds=30) as store:
            checkpoint = store.load_checkpoint(self.name)
            record_registry(store, self.config.registry, self.config.billing.timezone)
        first = 1
        if checkpoint is not None:
            self.decoder.restore(json.loads(checkpoint.decoder_state))
            first = checkpoint.journal_segment
        replayed = 0
        for batch in self.journal.replay(first, self.journal.current - 1):
            self.pipeline.feed(batch)
            replayed += len(batch)
        if self.journal.torn_records:
            log.warning(
                "journal: %d torn record(s) at a segment's end skipped", self.journal.torn_records
            )
        self._warm_up()
        if replayed:
            log.info("recovered %d datagrams from the journal of %s", replayed, self.name)
            self.metrics.inc("egress_journal_replayed_datagrams_total", replayed)
        # Commit the replay (or just the checkpoint) before receiving anything new.
        if not self.flush(wait_seconds=30):
            raise StoreError(f"{self.config.storage.database}: cannot commit the journal replay")
        return replayed

    def _warm_up(self) -> None:
        """Run sample datagrams of every protocol through a scratch decoder and the member
        table, so that no compiled kernel is loaded from disk (~0.3 s) or compiled (10-20 s
        for a signature met for the first time) while the first datagrams wait in the
        socket buffer. Nothing of it is kept."""
        started = time.monotonic()
        sample_usage = load_kernels(self.table, self.config.billing.bin_seconds * 1000)
        self.committer.warm_up(usage_frame(sample_usage, self.table))
        self.listener.warm_up()
        log.debug("kernels loaded in %.2f s", time.monotonic() - started)
        started = time.monotonic()
        if mapped := self.journal.map_all():
            log.info("journal: %d file(s) mapped in %.2f s", mapped, time.monotonic() - started)

    # -- main loop ---------------------------------------------------------------------
    def run(self, stop: threading.Event, reload: threading.Event | None = None) -> None:
        gc.freeze()  # start-up objects are never garbage: later collections skip them
        mode = "on this thread" if self.pipeline.inline else "on its own thread"
        log.info(
            "%s receiving (journal recovered, kernels loaded; attribution %s)", self.name, mode
        )
        self.spares.start()
        interval = self.config.collector.flush_seconds
        next_flush = time.monotonic() + interval
        while not stop.is_set():
            timeout = max(0.0, min(0.2, next_flush - time.monotonic()))
            batch = self.listener.receive(timeout, into=self.journal)
            if len(batch):
                self.journal.append(batch)
                self.pipeline.feed(batch)
                self.metrics.inc("egress_datagrams_received_total", len(batch))
            self.finish_background_flush(block=False)
            if reload is not None and reload.is_set():
                reload.clear()
                self.reload()
                next_flush = time.monotonic() + interval
            # A flush still committing delays the next one; receiving never waits for it.
            if time.monotonic() >= next_flush and self.inflight is None:
                self.start_background_flush(wait_seconds=min(5.0, interval / 2))
                next_flush = time.monotonic() + interval
        # Data still waiting for its template will not be decoded after a restart (the
        # journal that held it is committed): count it as dropped in this last flush.
        self.pipeline.finish_input()
        self.flush(wait_seconds=3, force=True)

    # -- flush -------------------------------------------------------------------------
    def flush(self, wait_seconds: float = 0.0, *, force: bool = False) -> bool:
        """Commit everything received so far, in this thread; True when committed (else
        kept for later). A background flush still running is finished first."""
        self.finish_background_flush(block=True)
        started = time.monotonic()
        payload = self._prepare_flush(force)
        if payload is None:
            return True
        prepared = time.monotonic()
        return self._complete_flush(
            self.committer(payload, wait_seconds), payload, started, prepared
        )

    def start_background_flush(self, wait_seconds: float) -> None:
        """Prepare a flush here and commit it on the commit thread, so that receiving goes
        on while DuckDB writes (a commit can take longer than the socket buffer lasts).

        Until it completes nothing new is added to ``self.pending`` (harvests are only
        taken when a flush is prepared), so a failed commit simply leaves it for the next.
        """
        started = time.monotonic()
        payload = self._prepare_flush(force=False)
        if payload is None:
            return
        future = self._commit_thread.submit(self.committer, payload, wait_seconds)
        self.inflight = _InFlight(future, payload, started, time.monotonic())

    def finish_background_flush(self, *, block: bool) -> bool | None:
        """Account for the background flush once its commit is done (wait for it when
        ``block``); None when there is none or it is still running."""
        inflight = self.inflight
        if inflight is None or (not block and not inflight.future.done()):
            return None
        self.inflight = None
        try:
            error = inflight.future.result()
        except Exception as exc:  # the committer's own failure: keep the data, say why
            log.exception("flush failed")
            error = f"{type(exc).__name__}: {exc}"
        return self._complete_flush(error, inflight.payload, inflight.started, inflight.prepared)

    def _prepare_flush(self, force: bool) -> FlushPayload | None:
        """Close the journal segment and take everything not yet committed into a payload
        (None when there is nothing new)."""
        if (
            not force
            and self.journal.appended_since_rotate == 0
            and self.pending.empty
            and self.last_flush_ok is not None
        ):
            return None  # nothing new: no segment to close, nothing to commit
        segment = self.journal.rotate()
        harvest = self.pipeline.drain()
        self.pending.add(harvest, self.table)
        drops = self.listener.kernel_drops()
        if drops > self.kernel_drops_seen:
            now_bin = int(time.time() * 1000) // (self.config.billing.bin_seconds * 1000)
            bin_ms = now_bin * self.config.billing.bin_seconds * 1000
            self.pending.counters[(bin_ms, "*", "kernel_drops")] += drops - self.kernel_drops_seen
            self.pending.dropped["kernel_receive_buffer"] += drops - self.kernel_drops_seen
            self.metrics.inc("egress_kernel_drops_total", drops - self.kernel_drops_seen)
            self.kernel_drops_seen = drops
        truncated = getattr(self.listener, "truncated", 0)
        if truncated > self.truncated_seen:
            self.pending.dropped["datagram_too_large"] += truncated - self.truncated_seen
            self.truncated_seen = truncated
        pending = self.pending
        usage = sum_usage(pending.usage)
        pending.usage = [usage]
        payload = FlushPayload(
            worker=self.name,
            datagrams=pending.datagrams,
            flows=pending.flows,
            first_flow_ms=pending.first_flow_ms,
            last_flow_ms=pending.last_flow_ms,
            dropped=dict(+pending.dropped),
            notes=dict(+pending.notes),
            usage=usage,
            counters=dict(pending.counters),
            seen=dict(pending.seen),
            checkpoint=Checkpoint(self.name, segment, json.dumps(self.decoder.snapshot())),
        )
        return payload

    def _complete_flush(
        self, error: str | None, payload: FlushPayload, started: float, prepared: float
    ) -> bool:
        """After a commit: on success forget what it wrote and the journal before it; on
        failure keep both for the next flush."""
        if error is not None:
            self.metrics.inc("egress_flush_failures_total")
            if self.busy_since is None:
                self.busy_since = time.monotonic()
                log.warning("flush postponed, data kept in memory and journal: %s", error)
            elif time.monotonic() - self.busy_since > 60:
                log.warning(
                    "database unavailable for %.0f s, still holding %d datagrams: %s",
                    time.monotonic() - self.busy_since,
                    payload.datagrams,
                    error,
                )
                self.busy_since = time.monotonic()
            return False
        self.journal.delete_before(payload.checkpoint.journal_segment)
        self.busy_since = None
        self.last_flush_ok = time.time()
        elapsed = time.monotonic() - started
        self.metrics.inc("egress_flushes_total")
        self.metrics.inc("egress_flows_committed_total", payload.flows)
        for reason, count in payload.dropped.items():
            self.metrics.inc("egress_dropped_total", count, reason=reason.split(":", 1)[0])
        self.metrics.set("egress_last_flush_timestamp_seconds", self.last_flush_ok)
        self.metrics.set("egress_last_flush_duration_seconds", elapsed)
        self.metrics.set("egress_journal_records_total", self.journal.records)
        self.metrics.set("egress_journal_mapped_records_total", self.journal.mapped_records)
        self.metrics.set("egress_journal_slot_records_total", self.journal.slot_records)
        log.info(
            "flush committed (%s): %d datagrams, %d flows, %d usage rows in %.3f s"
            " (prepared in %.3f s on the receiving thread; journal records since start"
            " %d, through a map %d, received into it %d)",
            self.name,
            payload.datagrams,
            payload.flows,
            len(payload.usage),
            elapsed,
            prepared - started,
            self.journal.records,
            self.journal.mapped_records,
            self.journal.slot_records,
        )
        self.pending = _Pending()
        return True

    # -- reload ------------------------------------------------------------------------
    def reload(self) -> bool:
        """Flush with the current rules, then switch to the configuration file's new ones."""
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            self.metrics.inc("egress_reload_failures_total")
            return False
        try:
            with Store.open(new.storage.database, wait_seconds=10) as store:
                record_registry(store, new.registry, new.billing.timezone)
        except (PastChangeRefused, StoreError) as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            self.metrics.inc("egress_reload_failures_total")
            return False
        if new.collector.listen != self.config.collector.listen:
            log.warning("reload: listen addresses changed; they take effect at the next restart")
        self.flush(wait_seconds=5)
        self.config = new
        self.table = compile_registry(new.registry, new.billing.timezone)
        self.pipeline.set_table(self.table)
        self.pipeline.set_policy(new)
        log.info(
            "reloaded %s: %d members, %d exporters", new.path, len(new.members), len(new.exporters)
        )
        self.metrics.inc("egress_reloads_total")
        return True

    def close(self) -> None:
        self.finish_background_flush(block=True)
        self._commit_thread.shutdown(wait=True)
        self.pipeline.close()
        self.listener.close()
        self.spares.stop()
        self.journal.close()


def sum_usage(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Labelled usage frames summed by key (one row per bin, bucket, member, direction)."""
    frames = [f for f in frames if f.height]
    if not frames:
        return usage_frame(UsageRows.empty(), compile_members(()))
    if len(frames) == 1:
        return frames[0]
    return (
        pl.concat(frames)
        .group_by(["bin_start", "bucket", "member_id", "direction"], maintain_order=True)
        .agg(pl.col("bytes").sum(), pl.col("packets").sum(), pl.col("flows").sum())
    )
