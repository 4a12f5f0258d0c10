"""Registration with Airflow: provider info, the `bluecore` connection type and its form, as Airflow itself sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest

from airflow_provider_bluecore.config import EXTRA_FIELDS
from airflow_provider_bluecore.get_provider_info import get_provider_info
from airflow_provider_bluecore.hooks.bluecore import BluecoreHook

AIRFLOW_3 = airflow.__version__.startswith("3.")
KINDS = {"IntegerField": "integer", "BooleanField": "boolean", "StringField": "string"}


def airflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


def connection_type() -> dict[str, Any]:
    (entry,) = get_provider_info()["connection-types"]
    return entry


def test_provider_info_passes_the_schema_airflow_ships() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_entry_point_leads_to_get_provider_info() -> None:
    (entry,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_provider_bluecore.")]
    assert entry.load()()["package-name"] == "airflow-provider-bluecore"


def test_declared_modules_and_classes_import() -> None:
    info = get_provider_info()
    modules = [
        m for key in ("hooks", "operators", "sensors", "triggers") for item in info.get(key, []) for m in item["python-modules"]
    ]
    modules += [t["python-module"] for t in info.get("transfers", [])]
    for module in modules:
        __import__(module)
    assert connection_type()["hook-class-name"] == f"{BluecoreHook.__module__}.{BluecoreHook.__qualname__}"


def test_connection_type_matches_the_hook() -> None:
    entry = connection_type()
    assert (entry["connection-type"], entry["hook-name"]) == (BluecoreHook.conn_type, BluecoreHook.hook_name)


def test_hook_classmethod_behaviour_matches_provider_info() -> None:
    behaviour = connection_type()["ui-field-behaviour"]
    assert BluecoreHook.get_ui_field_behaviour() == {
        "hidden_fields": behaviour["hidden-fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }


def _form_seen_by_airflow() -> dict[str, tuple[str, str, Any]]:
    """name -> (label, kind, default) of every `bluecore` extra field, from Airflow's own ProvidersManager.

    Airflow 3.2+ builds it from provider-info ``conn-fields``; Airflow 2.x from the hook's ``get_connection_form_widgets()``.
    """
    from airflow.providers_manager import ProvidersManager

    seen = {}
    for key, widget in ProvidersManager().connection_form_widgets.items():
        if not key.startswith("extra__bluecore__"):
            continue
        if isinstance(widget.field, dict):  # Airflow 3: a JSON-schema description
            schema = widget.field["schema"]
            seen[widget.field_name] = (schema["title"], schema["type"][0], schema.get("default"))
        else:  # Airflow 2: an unbound wtforms field
            kind = KINDS[widget.field.field_class.__name__]
            seen[widget.field_name] = (str(widget.field.args[0]), kind, widget.field.kwargs.get("default"))
    return seen


def test_airflow_sees_the_form_of_the_extra_fields_table() -> None:
    expected = {}
    for f in EXTRA_FIELDS:
        # wtforms has no decimal field: Airflow 2.x shows numbers as text, the connection parses them strictly.
        kind = "string" if f.kind == "number" and not AIRFLOW_3 else f.kind
        default = str(f.default) if kind == "string" and f.default is not None else f.default
        expected[f.name] = (f.label, kind, default)
    assert _form_seen_by_airflow() == expected


def test_airflow_sees_the_field_behaviour() -> None:
    from airflow.providers_manager import ProvidersManager

    behaviour = ProvidersManager().field_behaviours["bluecore"]
    assert behaviour["hidden_fields"] == ["schema", "password"]
    assert behaviour["relabeling"] == {"login": "Namespace", "host": "API base URL"}


def test_airflow_sees_a_testable_hook() -> None:
    if AIRFLOW_3:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    else:
        from airflow.providers_manager import ProvidersManager as Manager

    hook = Manager().hooks["bluecore"]
    assert hook is not None
    assert (hook.hook_name, hook.connection_id_attribute_name, hook.connection_testable) == ("Bluecore", "bluecore_conn_id", True)


def test_airflow_providers_list_shows_the_package() -> None:
    result = airflow_cli("providers", "list", "-o", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    packages = {p["package_name"] for p in json.loads(result.stdout[result.stdout.index("[") :])}
    assert "airflow-provider-bluecore" in packages


@pytest.mark.airflow_db
@pytest.mark.usefixtures("airflow_db")
def test_cli_stores_a_connection_of_type_bluecore() -> None:
    added = airflow_cli("connections", "add", "bc_cli", "--conn-type", "bluecore", "--conn-login", "bluestore")
    assert added.returncode == 0, added.stderr[-2000:]
    got = airflow_cli("connections", "get", "bc_cli", "-o", "json")
    (conn,) = json.loads(got.stdout[got.stdout.index("[") :])
    assert (conn["conn_type"], conn["login"]) == ("bluecore", "bluestore")
