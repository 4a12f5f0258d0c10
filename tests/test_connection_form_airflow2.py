"""The `bluecore` connection form in the Airflow 2.x webserver, checked without a browser.

Airflow 2.x builds its connection form from the hook's ``get_connection_form_widgets()`` (wtforms fields through
``ProvidersManager``) and saves it with ``ConnectionModelView.process_form``. These tests use those very classes: the form is
rendered as the webserver renders it, posted as a browser posts it (every input with the value it shows), saved into the
connection's extras as the webserver saves them, and read back by :class:`BluecoreConfig`. That the widgets are registered
with ``ProvidersManager`` is checked in ``test_provider_info.py``.

Airflow 3 has no Flask webserver: these tests carry the ``airflow2`` marker and are deselected there by design.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_bluecore.config import DEFAULT_BASE_URL, EXTRA_FIELDS, BluecoreConfig

pytestmark = pytest.mark.airflow2

PREFIX = "extra__bluecore__"
USER = {"conn_id": "bluecore_form", "conn_type": "bluecore", "login": "bluestore", "host": "http://127.0.0.1:8765"}


@pytest.fixture(scope="module")
def form_class() -> Any:
    """The webserver's ConnectionForm class, with every installed provider's extra fields."""
    from airflow.www.forms import create_connection_form_class

    return create_connection_form_class()


@pytest.fixture(scope="module")
def app() -> Any:
    """A Flask app with Babel (the labels are lazy translations); CSRF off, as the form is posted directly."""
    from flask import Flask
    from flask_babel import Babel

    flask_app = Flask(__name__)
    flask_app.config.update(WTF_CSRF_ENABLED=False, SECRET_KEY="test")
    Babel(flask_app)
    return flask_app


@pytest.fixture
def request_context(app: Any) -> Iterator[None]:
    with app.test_request_context(method="POST"):
        yield


def rendered_values(form_class: Any) -> dict[str, str]:
    """What a browser would post for an untouched Add Connection form: each bluecore text input's shown value."""
    form = form_class()
    values = {}
    for field in EXTRA_FIELDS:
        html = str(form[PREFIX + field.name]())
        if field.kind != "boolean":  # an unchecked checkbox is not posted
            values[PREFIX + field.name] = re.search(r'value="([^"]*)"', html).group(1) if 'value="' in html else ""
    return values


def save(form_class: Any, posted: dict[str, str]) -> tuple[Any, BluecoreConfig | None]:
    """Validate a posted form and save it as the webserver does; the connection's config (None if the form was refused)."""
    from airflow.www.views import ConnectionModelView
    from werkzeug.datastructures import MultiDict

    form = form_class(formdata=MultiDict(posted))
    if not form.validate():
        return form, None
    # process_form only needs the view's methods, not a running Flask-AppBuilder.
    ConnectionModelView.process_form(ConnectionModelView.__new__(ConnectionModelView), form, True)
    return form, BluecoreConfig.from_connection(form.login.data, form.host.data, form.extra.data)


@pytest.mark.usefixtures("request_context")
def test_every_extra_renders_with_its_label_input_and_default(form_class: Any) -> None:
    form, posted = form_class(), rendered_values(form_class)
    for field in EXTRA_FIELDS:
        bound = form[PREFIX + field.name]
        assert (str(bound.label.text), bound.description) == (field.label, field.description)
        html = str(bound())
        if field.kind == "boolean":
            assert 'type="checkbox"' in html
            assert ("checked" in html) is bool(field.default)
        else:
            assert 'type="text"' in html
            assert posted[PREFIX + field.name] == ("" if field.default is None else str(field.default))


@pytest.mark.usefixtures("request_context")
def test_untouched_form_saves_extras_that_read_as_the_defaults(form_class: Any) -> None:
    form, config = save(form_class, {**USER, **rendered_values(form_class)})
    assert config is not None, form.errors
    for field in EXTRA_FIELDS:
        assert getattr(config, field.name) == field.default, field.name


@pytest.mark.usefixtures("request_context")
def test_typed_values_are_saved_and_read_back(form_class: Any) -> None:
    typed = {PREFIX + "timeout": "7.5", PREFIX + "max_retries": "2", PREFIX + "device": "warehouse"}
    typed[PREFIX + "allow_insecure_http"] = "y"
    form, config = save(form_class, {**USER, **rendered_values(form_class), **typed, "host": "http://10.0.0.5:8080"})
    assert config is not None, form.errors
    assert (config.timeout, config.max_retries, config.device, config.allow_insecure_http) == (7.5, 2, "warehouse", True)
    assert (config.namespace, config.base_url) == ("bluestore", "http://10.0.0.5:8080")


@pytest.mark.usefixtures("request_context")
@pytest.mark.parametrize("field", [f for f in EXTRA_FIELDS if f.kind == "integer"], ids=lambda f: f.name)
def test_integer_fields_refuse_values_below_their_minimum(form_class: Any, field: Any) -> None:
    below = str(int(field.minimum) - 1)
    form, config = save(form_class, {**USER, **rendered_values(form_class), PREFIX + field.name: below})
    assert config is None
    assert form.errors == {PREFIX + field.name: [f"Number must be at least {int(field.minimum)}."]}


@pytest.mark.usefixtures("request_context")
def test_integer_fields_refuse_text(form_class: Any) -> None:
    form, config = save(form_class, {**USER, **rendered_values(form_class), PREFIX + "max_retries": "five"})
    assert config is None
    assert list(form.errors) == [PREFIX + "max_retries"]
    assert "Not a valid integer value." in form.errors[PREFIX + "max_retries"]


@pytest.mark.usefixtures("request_context")
def test_edit_form_shows_the_stored_extras(form_class: Any) -> None:
    from airflow.www.views import ConnectionModelView

    stored = '{"timeout": 7.5, "device": "warehouse", "allow_insecure_http": true}'
    form = form_class(data={**USER, "extra": stored})
    ConnectionModelView.prefill_form(ConnectionModelView.__new__(ConnectionModelView), form, pk=None)
    shown = {name: form[PREFIX + name].data for name in ("timeout", "device", "allow_insecure_http")}
    assert shown == {"timeout": 7.5, "device": "warehouse", "allow_insecure_http": True}


def test_namespace_base_url_and_port_placeholders_reach_the_webserver() -> None:
    from airflow.providers_manager import ProvidersManager

    behaviour = ProvidersManager().field_behaviours["bluecore"]
    assert behaviour["placeholders"] == {"login": "bluestore", "host": DEFAULT_BASE_URL, "port": "443"}
    assert behaviour["hidden_fields"] == ["schema", "password"]
