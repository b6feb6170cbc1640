"""Render docs/benchmarks.md from the saved results in docs/bench-results/*.json."""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import RESULTS, ROOT

HEADER = """# Benchmarks

Every number here comes from `make bench` (or the command shown) on the machine named with it.
Each benchmark measures a baseline in the same run and reports the ratio, so the ratio is the
number to compare across machines. Tests never assert timings; these files are the record.

"""


def section(result: dict) -> str:
    unit = result["unit"]
    lines = [
        f"## {result.get('title', result['benchmark'])}",
        "",
        f"- **{result['value']:,} {unit}** (target {result['target']:,} {unit}); "
        f"baseline ({result['baseline_name']}): {result['baseline']:,} {unit}; "
        f"ratio **{result['ratio']}×**",
        *(f"- {line}" for line in result.get("also", [])),
        f"- command: `{result['command']}`",
        f"- measured {result['when']} on {result['machine']['cpus']} CPUs, "
        f"Python {result['machine']['python']}, {result['machine']['platform']}",
        "",
        "```",
        f"baseline {'█' * 4:<44} {result['baseline']:>12,} {unit}",
        f"measured {'█' * min(60, round(4 * result['ratio'])):<44} {result['value']:>12,} {unit}",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_report() -> Path:
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    path = ROOT / "docs" / "benchmarks.md"
    path.write_text(HEADER + "\n".join(section(r) for r in results))
    return path
