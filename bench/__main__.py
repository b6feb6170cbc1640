"""``python -m bench`` (``make bench``): run every benchmark, then rewrite docs/benchmarks.md."""

from __future__ import annotations

import importlib
import sys

from bench.report import write_report

BENCHMARKS = ["emulator_fast", "intake", "delivery"]


def main() -> None:
    chosen = sys.argv[1:] or BENCHMARKS
    for name in chosen:
        print(f"== {name}", flush=True)
        importlib.import_module(f"bench.{name}").run()
    path = write_report()
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
