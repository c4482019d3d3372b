"""Helpers for tests that run `egress collect` as a real process on loopback sockets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from reports.cli import main

EGRESS = shutil.which("egress") or str(Path(sys.executable).parent / "egress")


def free_port() -> int:
    """A UDP port free on both 127.0.0.1 and ::1 (and its TCP twin for metrics)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
            s4.bind(("127.0.0.1", 0))
            port = s4.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
                    s6.bind(("::1", port))
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def live_config(
    base_text: str,
    directory: Path,
    port: int,
    exporters: list[str],
    *,
    flush_seconds: float = 0.5,
    extra_collector: str = "",
) -> Path:
    """An egress.toml listening on 127.0.0.1/::1:port with the given exporters declared
    (the synthetic config's own [[exporters]] are replaced)."""
    lines = []
    skip = False
    for line in base_text.splitlines():
        if line.strip() == "[[exporters]]":
            skip = True
            continue
        if skip and line.startswith("address ="):
            continue
        skip = False
        lines.append(line)
    text = "\n".join(lines)
    collector = (
        "[collector]\n"
        f'listen = ["127.0.0.1:{port}", "[::1]:{port}"]\n'
        f"flush_seconds = {flush_seconds}\n"
        'state_dir = "state"\n'
        f'metrics_listen = "127.0.0.1:{port}"\n'
        f"{extra_collector}\n"
    )
    declared = "".join(f'[[exporters]]\naddress = "{a}"\n\n' for a in exporters)
    text = text.replace("[contract]", collector + "\n" + declared + "[contract]", 1)
    path = directory / "egress.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Collector:
    """`egress collect` in a subprocess (own process group, logs to a file)."""

    def __init__(self, config: Path, port: int, cores: set[int] | None = None) -> None:
        self.config = config
        self.port = port
        self.cores = cores  # CPU affinity (one core: attribution runs inline, v5 in place)
        self.log = config.parent / "collect.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Collector:
        before = self.log.stat().st_size if self.log.exists() else 0
        log = self.log.open("a")
        self.proc = subprocess.Popen(
            [EGRESS, "collect", "-c", str(self.config)],
            cwd=self.config.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if self.cores is None else lambda: os.sched_setaffinity(0, self.cores),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"egress collect exited: {self.log.read_text()}")
            # Ready once this process logged its first commit (made after binding its sockets).
            text = self.log.read_bytes()[before:].decode(errors="replace")
            first_commit = (
                "listening on" in text and "flush committed" in text.split("listening on", 1)[1]
            )
            every_worker = "workers started" not in text or text.count(
                "flush committed"
            ) >= text.count("listening on")
            if first_commit and every_worker:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"egress collect did not start: {self.log.read_text()}")

    def metrics(self) -> dict[str, float] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def received(self) -> int:
        m = self.metrics() or {}
        return int(
            m.get("egress_datagrams_received_total", 0)
            + m.get("egress_journal_replayed_datagrams_total", 0)
        )

    def wait_received(self, count: int, timeout: float = 30.0) -> None:
        """Until the collector has journaled and fed ``count`` datagrams since it started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if int((self.metrics() or {}).get("egress_datagrams_received_total", 0)) >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f"collector received {self.metrics()} < {count}")

    def received_when_settled(self, quiet: float = 1.0, timeout: float = 60.0) -> int:
        """The datagrams received once the count has not moved for ``quiet`` seconds (a
        flood still in the socket buffer is counted batch by batch)."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = int((self.metrics() or {}).get("egress_datagrams_received_total", 0))
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return now
            time.sleep(0.05)
        raise AssertionError(f"the received count never settled: {self.metrics()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 5.0) -> float:
        """SIGTERM; returns how long the process took to exit."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout + 5)
        return time.monotonic() - began

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def report_json(config: Path, month: str = "2026-11") -> dict:
    result = CliRunner().invoke(main, ["report", "-c", str(config), "-m", month, "-f", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def egress_status(config: Path) -> str:
    result = CliRunner().invoke(main, ["status", "-c", str(config)])
    assert result.exit_code == 0, result.output
    return result.output


def send_payloads(
    payloads: list[bytes], port: int, source: str = "127.0.1.1", host: str = "127.0.0.1"
) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        for p in payloads:
            s.sendto(p, (host, port))
