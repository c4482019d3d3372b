"""The collector keeps receiving while a flush commits, and loses nothing when it does.

The service runs in this process on real loopback sockets and a real DuckDB file; its
committer is the real one, held back by an event so the test decides when the commit
ends. Receiving must go on meanwhile (a DuckDB commit can outlast the socket buffer at
high rates), and the totals in the database must equal the ground truth afterwards,
also when the held commit fails and is retried.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from live import free_port, live_config, report_json
from test_collect_live import _expected, _got, _payloads, _send

from accounting.config import load_config
from accounting.service import COMMIT_NICE, CollectorService, DirectCommitter
from collector.synth.model import TrafficSpec
from collector.synth.scenario import v5_scenario


class HeldCommitter:
    """The real committer, whose first ``held`` commits wait for ``release`` and then
    fail (``fail_first``) or go through."""

    def __init__(self, database, fail_first: bool) -> None:
        self.real = DirectCommitter(database)
        self.release = threading.Event()
        self.entered = threading.Event()
        self.fail_first = fail_first
        self.calls = 0
        self.nice: list[int] = []

    def __call__(self, payload, wait_seconds):
        self.calls += 1
        self.nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        if self.calls == 1:
            self.entered.set()
            assert self.release.wait(30), "the test never released the commit"
            if self.fail_first:
                return "held and refused by the test"
        return self.real(payload, wait_seconds)


def _wait(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("fail_first", [False, True], ids=["commit-ok", "commit-fails"])
def test_receiving_goes_on_while_a_flush_commits(tmp_path, fail_first):
    scenario = v5_scenario(tmp_path / "gen", members=8, spec=TrafficSpec(seed=5, flows=6_000))
    port = free_port()
    path = live_config(
        scenario.config.read_text(),
        tmp_path,
        port,
        ["127.0.1.1", "127.0.1.2"],
        flush_seconds=0.3,
    )
    config = load_config(path)
    committer = HeldCommitter(config.storage.database, fail_first)
    service = CollectorService(config, committer=DirectCommitter(config.storage.database))
    service.recover()  # the start-up commit, not held
    service.committer = committer
    items = _payloads(scenario)
    half = len(items) // 2
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), daemon=True)
    runner.start()
    try:
        _send(items[:half], port)
        assert committer.entered.wait(30), "no background flush started"
        # The commit is held: everything else must still be received and journaled.
        _send(items[half:], port)
        received = lambda: service.metrics.value("egress_datagrams_received_total")  # noqa: E731
        _wait(lambda: received() >= len(items), f"{len(items)} datagrams received")
        assert not committer.release.is_set() and service.inflight is not None
        committer.release.set()
        _wait(lambda: service.inflight is None, "the held flush to complete")
        assert service.metrics.value("egress_flush_failures_total") == (1 if fail_first else 0)
    finally:
        committer.release.set()
        stop.set()
        runner.join(30)
        service.close()
    assert not runner.is_alive()
    assert received() == len(items)
    assert _got(report_json(path)) == _expected(scenario)
    # Background commits run at the lowest CPU priority: receiving comes first on a busy
    # core (the last one, at stop, runs in the stopping thread).
    assert len(committer.nice) >= 2 and set(committer.nice[:-1]) == {COMMIT_NICE}
