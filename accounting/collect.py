"""Start-up and shutdown of `egress collect`: checks, metrics endpoint, the worker(s)."""

from __future__ import annotations

import logging
import threading

from accounting.config import Config
from accounting.service import CollectorService
from collector.errors import EgressError
from collector.metrics import Metrics, MetricsServer

log = logging.getLogger("egress.collect")


def run_collector(
    config: Config, stop: threading.Event, reload: threading.Event | None = None
) -> None:
    """Run until ``stop`` is set; ``reload`` set means: re-read the configuration file."""
    if not config.exporters and not config.collector.allow_unknown_exporters:
        raise EgressError(
            f"{config.path}: no [[exporters]] declared and allow_unknown_exporters is false, so every"
            " datagram would be dropped: declare the routers (address = ...) or set"
            " allow_unknown_exporters = true under [collector]"
        )
    if config.collector.workers > 1:
        from accounting.workers import run_workers

        run_workers(config, stop, reload)
        return
    metrics = Metrics()
    server = None
    if config.collector.metrics_listen is not None:
        m = config.collector.metrics_listen
        server = MetricsServer(metrics, m.host, m.port)
        log.info("metrics on http://%s/metrics", m)
    service = CollectorService(config, metrics=metrics)
    try:
        log.info(
            "listening on %s (receive buffer %s bytes); database %s; journal %s",
            ", ".join(str(e) for e in service.listener.bound()),
            ", ".join(str(b) for b in service.listener.receive_buffer_bytes),
            config.storage.database,
            service.journal.directory,
        )
        service.recover()
        service.run(stop, reload)
        log.info("stopped cleanly")
    finally:
        service.close()
        if server is not None:
            server.close()
