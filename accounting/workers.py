"""`egress collect` with ``workers = N``: N receiving processes, one writer.

Each worker process binds the same UDP addresses with SO_REUSEPORT; a classic BPF
program steers every router, by its source address, to one worker, so template state
stays in one place. A worker receives, journals (its own journal), decodes and
attributes exactly like the one-process collector (:class:`CollectorService`), but hands
each flush to this parent process, which alone opens the database and commits: one write
path, and DuckDB's one-writer rule is never contended.

Start-up: journals of workers that no longer exist (``workers`` was lowered) are
replayed and committed by the parent before the workers start. A worker that dies is
restarted (it replays its own journal).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import multiprocessing.connection as mpc
import threading
import time
from pathlib import Path

import polars as pl

from accounting.collector_config import journal_root
from accounting.config import Config, load_config
from accounting.service import SERVICE_PACKED_RING, CollectorService, FlushPayload, commit_payload
from accounting.store import Store, StoreError
from collector.datagrams import DatagramBatch
from collector.listen import Endpoint, UdpListener, attach_source_hash
from collector.metrics import Metrics, MetricsServer

log = logging.getLogger("egress.collect")


class PipeCommitter:
    """A worker's committer: sends the payload to the parent and waits for its answer."""

    def __init__(self, conn: mpc.Connection) -> None:
        self.conn = conn

    def __call__(self, payload: FlushPayload, wait_seconds: float) -> str | None:
        self.conn.send((payload, wait_seconds))
        return self.conn.recv()

    def warm_up(self, usage: pl.DataFrame) -> None:
        """Nothing: the parent commits, in a process that does not receive."""


class NullListener:
    """No sockets: used to replay the journal of a worker that no longer runs."""

    def __init__(self) -> None:
        self.receive_buffer_bytes: list[int] = []

    def receive(self, timeout: float) -> DatagramBatch:
        time.sleep(timeout)
        return DatagramBatch.from_payloads([])

    def kernel_drops(self) -> int:
        return 0

    def warm_up(self) -> None:
        pass

    def bound(self) -> list[Endpoint]:
        return []

    def close(self) -> None:
        pass


def _worker_main(
    index: int,
    groups: int,
    config_path: str,
    commit_conn,
    control_conn,
    log_format: str,
    log_level: str,
) -> None:
    """Entry point of a worker process."""
    from collector.logs import setup_logging

    setup_logging(log_format, log_level)
    config = load_config(config_path)
    listener = UdpListener(
        [Endpoint(a.host, a.port) for a in config.collector.listen],
        receive_buffer_bytes=config.collector.receive_buffer_bytes,
        reuse_port=True,
        packed_ring=SERVICE_PACKED_RING,
    )
    for sock in listener.sockets:
        attach_source_hash(sock, groups)
    service = CollectorService(
        config, name=f"worker-{index}", listener=listener, committer=PipeCommitter(commit_conn)
    )
    stop = threading.Event()
    reload = threading.Event()

    def control() -> None:
        while True:
            try:
                message = control_conn.recv()
            except EOFError:
                stop.set()
                return
            if message == "stop":
                stop.set()
                return
            if message == "reload":
                reload.set()

    threading.Thread(target=control, name="egress-control", daemon=True).start()
    log.info(
        "worker-%d listening on %s; journal %s",
        index,
        ", ".join(str(e) for e in listener.bound()),
        service.journal.directory,
    )
    try:
        service.recover()
        service.run(stop, reload)
    finally:
        service.close()


def _orphan_workers(config: Config, groups: int) -> list[str]:
    root = journal_root(config.collector)
    if not root.exists():
        return []
    names = [p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("worker-")]
    return sorted(n for n in names if not (n[7:].isdigit() and int(n[7:]) < groups))


def run_workers(config: Config, stop: threading.Event, reload: threading.Event | None) -> None:
    groups = config.collector.workers
    logger = logging.getLogger("egress")
    log_format = (
        "json"
        if any(type(h.formatter).__name__ == "JsonFormatter" for h in logger.handlers)
        else "text"
    )
    log_level = logging.getLevelName(logger.level).lower()
    metrics = Metrics()
    server = None
    if config.collector.metrics_listen is not None:
        m = config.collector.metrics_listen
        server = MetricsServer(metrics, m.host, m.port)
        log.info("metrics on http://%s/metrics", m)
    for name in _orphan_workers(config, groups):
        log.info("replaying the journal of %s (no longer running)", name)
        orphan = CollectorService(config, name=name, listener=NullListener(), metrics=metrics)
        try:
            orphan.recover()
            orphan.journal.remove_spares()  # this journal is never written again
        finally:
            orphan.close()
        Path(orphan.journal.directory).rmdir() if not any(
            orphan.journal.directory.iterdir()
        ) else None

    ctx = mp.get_context("spawn")
    workers: dict[int, tuple[mp.Process, mpc.Connection, mpc.Connection]] = {}

    def start(index: int) -> None:
        commit_parent, commit_child = ctx.Pipe()
        control_parent, control_child = ctx.Pipe()
        proc = ctx.Process(
            target=_worker_main,
            args=(
                index,
                groups,
                str(config.path),
                commit_child,
                control_child,
                log_format,
                log_level,
            ),
            name=f"egress-worker-{index}",
            daemon=False,
        )
        proc.start()
        workers[index] = (proc, commit_parent, control_parent)

    for i in range(groups):
        start(i)
    log.info("%d workers started", groups)
    stopping = False
    try:
        while workers:
            if stop.is_set() and not stopping:
                stopping = True
                for _, _, control in workers.values():
                    control.send("stop")
            if reload is not None and reload.is_set():
                reload.clear()
                try:
                    load_config(config.path)
                except Exception as exc:  # the workers would refuse it too; say it once
                    log.error("reload refused, keeping the running configuration: %s", exc)
                else:
                    for _, _, control in workers.values():
                        control.send("reload")
            conns = [commit for _, commit, _ in workers.values()]
            for conn in mpc.wait(list(conns), timeout=0.2):
                try:
                    payload, wait_seconds = conn.recv()
                except EOFError:
                    continue
                conn.send(_commit(config, payload, wait_seconds, metrics))
            for index, (proc, _, _) in list(workers.items()):
                if proc.is_alive():
                    continue
                proc.join()
                del workers[index]
                if not stopping:
                    log.error(
                        "worker-%d exited with status %s; restarting it", index, proc.exitcode
                    )
                    start(index)
    finally:
        for proc, _, _ in workers.values():
            proc.terminate()
        if server is not None:
            server.close()


def _commit(
    config: Config, payload: FlushPayload, wait_seconds: float, metrics: Metrics
) -> str | None:
    try:
        with Store.open(config.storage.database, wait_seconds=wait_seconds) as store:
            commit_payload(store, payload)
    except StoreError as exc:
        metrics.inc("egress_flush_failures_total")
        return str(exc)
    metrics.inc("egress_flushes_total")
    metrics.inc("egress_datagrams_received_total", payload.datagrams)
    metrics.inc("egress_flows_committed_total", payload.flows)
    metrics.set("egress_last_flush_timestamp_seconds", time.time())
    return None
