"""The collector's warm-up compiles every kernel of the receive path for the buffers it
will meet: writable ones from the listener and read-only ones from journal replay.

numba compiles one machine code per argument signature, and read-only and writable
arrays are different types. A warm-up with read-only sample buffers only left the
listener's signature to be compiled on the first live batch: 19 s with datagrams
waiting in the socket buffer, and the accuracy benchmark of a fresh checkout lost them.
Checked in a fresh process, where only what the warm-up calls is loaded.
"""

from __future__ import annotations

import subprocess
import sys

from collector.synth.model import TrafficSpec
from collector.synth.scenario import v5_scenario

CODE = """
import sys
from accounting import kernels_inplace
from accounting.config import load_config
from accounting.members import compile_registry
from accounting.service import load_kernels
from collector.decode import _fieldkernel, _v5kernel

config = load_config(sys.argv[1])
table = compile_registry(config.registry, config.billing.timezone)
load_kernels(table, config.billing.bin_seconds * 1000)
for kernel in (
    kernels_inplace.attribute_v5,
    kernels_inplace.attribute_records,
    _v5kernel.convert_v5,
    _fieldkernel._extract_sets,
):
    kinds = sorted({"writable" if sig[0].mutable else "read-only" for sig in kernel.signatures})
    print(kernel.__name__, ",".join(kinds))
"""


def test_the_warm_up_compiles_for_writable_and_read_only_buffers(tmp_path):
    seen = dict(line.split() for line in _in_a_fresh_process(CODE, tmp_path).splitlines())
    assert seen == {
        "attribute_v5": "read-only,writable",
        "attribute_records": "read-only,writable",
        "convert_v5": "read-only,writable",
        "_extract_sets": "read-only,writable",
    }


COMMIT_CODE = """
import sys
from accounting.config import load_config
from accounting.members import compile_registry
from accounting.service import load_kernels, warm_up_commit
from accounting.store import usage_frame

config = load_config(sys.argv[1])
table = compile_registry(config.registry, config.billing.timezone)
usage = usage_frame(load_kernels(table, config.billing.bin_seconds * 1000), table)
before = "pyarrow" in sys.modules
warm_up_commit(usage)
print(usage.height, before, "pyarrow" in sys.modules)
"""


def test_the_warm_up_commit_loads_what_a_first_commit_needs(tmp_path):
    """A first commit registers a frame with DuckDB, which imports pyarrow holding the GIL
    (the receiving thread waited 250 ms for it): the warm-up does it, in memory."""
    rows, before, after = _in_a_fresh_process(COMMIT_CODE, tmp_path).split()
    assert int(rows) > 0  # the samples' usage: the frame path is taken, not skipped
    assert (before, after) == ("False", "True")
    assert not any(tmp_path.rglob("*.duckdb"))  # nothing written where the collector keeps data


def _in_a_fresh_process(code: str, tmp_path) -> str:
    """What ``code`` prints, run in a new interpreter on a small v5 scenario's config."""
    scenario = v5_scenario(tmp_path, members=3, spec=TrafficSpec(seed=2, flows=50))
    return subprocess.run(
        [sys.executable, "-c", code, str(scenario.config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
