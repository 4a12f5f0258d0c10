"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point (see pyproject.toml)."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """The provider-info dict Airflow validates against its ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-bluecore",
        "name": "Bluecore",
        "description": "Apache Airflow provider for Bluecore's Events API.",
        "connection-types": [
            {
                "connection-type": "bluecore",
                "hook-class-name": "airflow_provider_bluecore.hooks.bluecore.BluecoreHook",
                "hook-name": "Bluecore",
            }
        ],
    }
