"""``python -m benchmarks [names] [--quick]``: run the benchmarks, print one table, exit 1 if any target is missed."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback

from benchmarks import Row, discover


def _table(rows: list[Row]) -> str:
    header = ("benchmark", "measured", "target", "ratio", "result")
    lines = [
        (
            str(row["name"]),
            str(row["measured"]),
            str(row["target"]),
            f"{row['ratio']:.2f}" if isinstance(row.get("ratio"), int | float) else "-",
            "PASS" if row["ok"] else "FAIL",
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    out = [" | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) for cells in [header, *lines]]
    out.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    available = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(available)}")
    parser.add_argument("--quick", action="store_true", help="smaller workloads: a smoke run, not the targets' sizes")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")
    selected = args.names or list(available)

    started = time.monotonic()
    rows: list[Row] = []
    for name in selected:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(available[name](quick=args.quick))
        except Exception:  # one broken benchmark must not hide the others' results
            traceback.print_exc()
            rows.append({"name": f"{name} (crashed, see above)", "measured": "-", "target": "-", "ok": False})

    cores = os.cpu_count() or 0
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(
        f"\nBenchmarks on {cores} CPU cores{load}; Python {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}{' (quick run: smaller than the targets)' if args.quick else ''}; "
        f"{time.monotonic() - started:.0f} s\n"
    )
    print(_table(rows))
    return 0 if rows and all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
