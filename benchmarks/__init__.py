"""Performance benchmarks, run by ``make bench`` (``python -m benchmarks [names] [--quick]``).

Every figure is a ratio measured side by side in the same run on the same machine (absolute numbers depend on the box and on
whatever else runs on it). Local servers are started by the benchmarks themselves (:mod:`benchmarks._server`).

Adding a benchmark: create ``benchmarks/<name>.py`` with a function ``results(quick: bool = False) -> list[dict]`` returning one
dict per table row with the keys ``name`` (what was measured), ``measured`` and ``target`` (display strings), ``ok`` (bool),
and optionally ``ratio`` (a float, measured against target, where >= 1 means the target is met). Public modules (no leading
underscore) are discovered automatically; ``python -m benchmarks <name>`` runs only the ones named. ``quick`` should shrink
the workload for a smoke run (its figures do not count against the targets).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Row", "discover", "report"]

Row = dict[str, Any]


def report(rows: Iterable[Row]) -> int:
    """Print one line per row as it completes (a module run alone); return the exit status: 0 when every target is met."""
    ok = True
    for row in rows:
        ok = ok and bool(row["ok"])
        print(f"{'PASS' if row['ok'] else 'FAIL'} {row['name']}: {row['measured']} (target {row['target']})", flush=True)
    return 0 if ok else 1


def discover() -> dict[str, Callable[..., list[Row]]]:
    """Every benchmark module's ``results`` function, by module name, in alphabetical order."""
    found: dict[str, Callable[..., list[Row]]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        results = getattr(module, "results", None)
        if callable(results):
            found[info.name] = results
    return found
