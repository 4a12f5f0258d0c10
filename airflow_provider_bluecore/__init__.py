"""Apache Airflow provider for Bluecore's Events API.

The package root holds only the version: importing it does no I/O and imports nothing from Airflow. The rules live in plain
modules (:mod:`.events`, :mod:`.config`, :mod:`.retry`, :mod:`.delivery`); Airflow integration lives in ``hooks/``,
``operators/``, ``transfers/``, ``sensors/`` and ``triggers/``.
"""

from __future__ import annotations

__version__ = "0.1.0"
