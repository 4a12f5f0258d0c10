"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point (see pyproject.toml).

Airflow calls :func:`get_provider_info` while it discovers providers, before any hook is imported: keep this module cheap
and free of Airflow imports. An invalid dict here makes *every* ``airflow`` command fail, so tests validate it against the
``provider_info.schema.json`` shipped by each supported Airflow version.

The connection form is declared twice, from one table (:data:`airflow_provider_bluecore.config.EXTRA_FIELDS`): here as
``conn-fields``/``ui-field-behaviour`` (read by Airflow 3.2+), and as the hook's ``get_connection_form_widgets()`` /
``get_ui_field_behaviour()`` classmethods (read by Airflow 2.x to 3.1).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_bluecore.config import provider_conn_fields, provider_ui_field_behaviour

INTEGRATION = "Bluecore"


def get_provider_info() -> dict[str, Any]:
    """The provider-info dict Airflow validates against its ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-bluecore",
        "name": "Bluecore",
        "description": "Apache Airflow provider for Bluecore's Events API: validated, streamed, deduplicated syncs.",
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "tags": ["service"],
            }
        ],
        # Only modules that exist and import are listed (a test imports each); add a module here when it lands.
        "operators": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_bluecore.operators.events"]}],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_bluecore.hooks.bluecore"]}],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_bluecore.sensors.freshness"]}],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_bluecore.triggers.freshness"]}],
        "transfers": [
            {
                "source-integration-name": "Common SQL",
                "target-integration-name": INTEGRATION,
                "python-module": "airflow_provider_bluecore.transfers.sql_to_bluecore",
            }
        ],
        "connection-types": [
            {
                "connection-type": "bluecore",
                "hook-class-name": "airflow_provider_bluecore.hooks.bluecore.BluecoreHook",
                "hook-name": "Bluecore",
                "conn-fields": provider_conn_fields(),
                "ui-field-behaviour": provider_ui_field_behaviour(),
            }
        ],
    }
