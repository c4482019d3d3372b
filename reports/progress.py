"""Progress on a terminal for long runs, and silence when the output is piped or logged.

``Spinner`` shows one line on stderr, ``⠋ computing the bill (shapley)… 12 s``, redrawn by
a background thread while the main thread works (the numba kernels release the GIL, so the
line keeps turning during a Shapley run), and erased at the end. It is active only when
stderr is a terminal: in a pipe, a cron job or a test, nothing is written.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
ASCII_FRAMES = "|/-\\"


def interactive(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Spinner:
    """``with Spinner("reading usage") as s: ...; s.set("computing the bill")``."""

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        interval: float = 0.1,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = interactive(self.stream) if enabled is None else enabled
        self.label = label
        self.interval = interval
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0
        self._frames, self._dots = FRAMES, "…"
        try:
            (FRAMES + "…").encode(getattr(self.stream, "encoding", None) or "ascii")
        except (UnicodeEncodeError, LookupError):
            self._frames, self._dots = ASCII_FRAMES, "..."

    def set(self, label: str) -> None:
        self.label = label

    def _draw(self, frame: str) -> None:
        seconds = time.monotonic() - self.started
        text = f"{frame} {self.label}{self._dots} {seconds:.0f} s"
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(self.interval):
            self._draw(self._frames[k % len(self._frames)])
            k += 1

    def __enter__(self) -> Spinner:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="spinner", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


def progress_bar(length: int, label: str, enabled: bool | None = None):
    """click's progress bar on stderr on a terminal; a do-nothing stand-in otherwise."""
    import click

    if enabled is None:
        enabled = interactive()
    if enabled:
        return click.progressbar(length=length, label=label, file=sys.stderr)
    return _Silent()


class _Silent:
    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None
