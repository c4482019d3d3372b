"""This process's memory mappings as /proc/self/smaps describes them, for tests."""

from __future__ import annotations

from pathlib import Path


def mapping_fields(address: int) -> dict[str, int] | None:
    """The size fields (bytes: Size, Rss, AnonHugePages...) of the mapping that holds
    ``address``; None when no mapping holds it."""
    fields: dict[str, int] | None = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head, _, rest = line.partition(" ")
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            if fields is not None:
                return fields  # the mapping that held it has ended
            low, high = (int(x, 16) for x in head.split("-"))
            if low <= address < high:
                fields = {}
        elif fields is not None and rest.strip().endswith("kB"):
            fields[head.rstrip(":")] = int(rest.split()[0]) * 1024
    return fields
