"""Benchmark suite entry point: ``python -m benchmarks run [--quick]`` or one benchmark by name.

python -m benchmarks run            # every benchmark, full size; rewrites RESULTS.md sections
python -m benchmarks run --quick    # CI smoke (~1.5 min): v5, accuracy, live, registry, small;
                                    # fails when egress is not exact against the ground truth
python -m benchmarks v5 [--quick]   # one benchmark

Benchmarks:
  v5         offline NetFlow v5 path, 1,000 members / 10,000 prefixes (foundation targets)
  accuracy   per-member totals of egress (ingest and collect), nfcapd+nfdump and nfacctd
             against the ground truth, on synthetic and softflowd/pmacctd captures
  live       highest zero-loss datagram rate over loopback (paced C sender on core 0,
             receiver on core 1): egress collect, nfcapd, nfacctd; needs root for
             net.core.rmem_max and a private network namespace (else runs as it can)
  scaling    egress throughput vs prefixes and flows per datagram, report time vs members;
             plots in benchmarks/plots/ (matplotlib)
  registry   load and compile 10,000 members (IPv4 + IPv6 prefixes), attribution with them
  decode     NetFlow v9 / IPFIX decode + attribute + bin, vs the PyPI netflow package
  billing    allocation rules and Shapley on 1,000 members x 8,928 bins
Each takes --quick and --help.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from benchmarks import accuracy, bench_registry, bench_v5, live, scaling
from benchmarks.common import wait_child


def _decode(argv: list[str]) -> int:
    from benchmarks import bench_decode_v9_ipfix

    return bench_decode_v9_ipfix.main(argv) or 0


def _billing(argv: list[str]) -> int:
    from benchmarks import bench_billing

    return bench_billing.main(argv)


# The CI smoke run (``run --quick``, ~1.5 min): what checks egress's exactness and keeps the
# throughput figures honest; the curves (scaling, decode, billing) only in the full run.
QUICK_SUITES = ("v5", "accuracy", "live", "registry")

SUITES = {
    "v5": bench_v5.main,
    "accuracy": accuracy.main,
    "live": live.main,
    "scaling": scaling.main,
    "registry": bench_registry.main,
    "decode": _decode,
    "billing": _billing,
}


def _run_suite(suite: str, rest: list[str]) -> int:
    """One suite in a fresh process, so that its timings and memory figures do not depend
    on what ran before it (one process for all measured the last suites with the heap of
    the first: 1.3 GB of peak RSS in the billing steps, decoding 30 % slower)."""
    return wait_child(subprocess.Popen([sys.executable, "-m", "benchmarks", suite, *rest]))


def _exit_on_sigterm(signum: int, _frame) -> None:
    # Unwind (finally blocks stop the receivers and restore net.core.rmem_max).
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "run":
        status = 0
        quick = "--quick" in rest
        for suite in SUITES:
            if quick and suite not in QUICK_SUITES:
                continue
            print(f"== {suite}", flush=True)
            status |= 1 if _run_suite(suite, rest) else 0
        return status
    if name not in SUITES:
        print(f"unknown benchmark {name!r}; choose from: run, {', '.join(SUITES)}", file=sys.stderr)
        return 2
    return SUITES[name](rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
