"""Counters and gauges of the running collector, and a Prometheus text endpoint for them.

Standard library only. Names follow Prometheus conventions (``_total`` for counters);
labels are a small fixed set (exporter address, drop reason).
"""

from __future__ import annotations

import http.server
import threading
import time
from collections import defaultdict

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """Thread-safe counters and gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._gauges: dict[str, dict[Labels, float]] = defaultdict(dict)
        self.started = time.time()

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._gauges[name][key] = value

    def value(self, name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        with self._lock:
            return self._counters.get(name, {}).get(key, self._gauges.get(name, {}).get(key, 0))

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            self._gauges["egress_uptime_seconds"][()] = time.time() - self.started
            for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
                for name in sorted(table):
                    lines.append(f"# TYPE {name} {kind}")
                    for labels, value in sorted(table[name].items()):
                        text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                        lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsServer:
    """Serves ``GET /metrics`` on a local address, on a daemon thread."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        registry = metrics

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics here")
                    return
                body = registry.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # no access log on stderr
                pass

        server_class = http.server.ThreadingHTTPServer
        if ":" in host:

            class V6Server(http.server.ThreadingHTTPServer):
                address_family = __import__("socket").AF_INET6

            server_class = V6Server
        self.server = server_class((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="egress-metrics", daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
