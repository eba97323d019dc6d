"""The base of every REST API (`WofficeModelRestApi`) and its request checks.

Every API goes through the tenant base (`TenantModelRestApi`) and adds, in
`WofficeModelRestApi`:

* **Session-cookie auth with CSRF.** The APIs accept FAB's browser login
  (``allow_browser_login``); FAB exempts every API blueprint from Flask-WTF's CSRF check,
  so a logged-in browser could be made to send a write from another site. A request
  authenticated by the session cookie must therefore carry the CSRF token in the
  ``X-CSRFToken`` header for POST/PUT/PATCH/DELETE (token-authenticated clients need
  none: a browser cannot attach their credentials cross-site).
* **Writes through the services.** POST and PUT load a plain marshmallow schema (unknown
  fields, ``tenant_id`` included, are refused) and call the same service rules as the
  screens; a broken rule answers 422 with ``{"message": {field: [reason]}}``.
* **No 500 for bad input.** Malformed JSON and rison answer 400, as do filter values the
  database cannot compare, out-of-range pages and a ``page_size`` below 1; above
  ``max_page_size`` (100) it is capped. Every error body is ``{"message": ...}``.
* **A spec that is true.** FAB's OpenAPI description is corrected where it differs from
  the answers (integer ids, datetimes with their UTC offset, write results, ``_info``);
  tests/api/test_schemathesis.py holds the API to it.

Agents see only their conversations and those conversations' messages: the same base
filters as the screens, backed by the ORM criteria of `app.tenancy`.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from typing import Any

import prison
from apispec import APISpec
from flask import Response, request
from flask_appbuilder.api import ModelRestApi, expose, permission_name, protect, safe
from flask_appbuilder.api.convert import Model2SchemaConverter
from flask_appbuilder.const import (
    API_ADD_COLUMNS_RIS_KEY,
    API_ADD_TITLE_RIS_KEY,
    API_EDIT_COLUMNS_RIS_KEY,
    API_EDIT_TITLE_RIS_KEY,
    API_FILTERS_RIS_KEY,
    API_PAGE_INDEX_RIS_KEY,
    API_PAGE_SIZE_RIS_KEY,
    API_URI_RIS_KEY,
)
from flask_appbuilder.exceptions import ApplyFilterException, FABException
from flask_login import current_user
from flask_security.utils import get_request_attr
from flask_wtf.csrf import CSRFError
from marshmallow import Schema, fields
from marshmallow import ValidationError as SchemaValidationError
from marshmallow.validate import Length
from prison.decoder import ParserException
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from app.extensions import csrf, db
from app.services.exceptions import ValidationError
from app.tenancy import TenantModelRestApi, current_tenant_id
from app.views.api_spec import correct_components, correct_operation

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Operators whose value is a list; every other operator takes one scalar.
LIST_OPERATORS = frozenset({"in", "not_in", "rel_m_m"})
# Text operators: a number sent for them is searched as its digits.
TEXT_OPERATORS = frozenset({"sw", "nsw", "ew", "new", "ct", "nct", "contact_search"})
# Deeper pages are refused: OFFSET beyond this is a scan, not a use case.
MAX_OFFSET = 1_000_000
NO_TENANT = "Sign in as a user of the tenant this record belongs to."


class ApiArgumentError(FABException):
    """A list argument (filter value, page) the API refuses with a 400."""


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise SchemaValidationError("Must not contain NUL characters.")


class Text(fields.String):
    """A string field refusing NUL characters (PostgreSQL cannot store them)."""

    def __init__(self, *, max_length: int, **kwargs: Any) -> None:
        super().__init__(validate=[Length(max=max_length), _no_nul], **kwargs)


# ------------------------------------------------------------------------ base class


def refuse_unparsable_rison() -> Response | None:
    """Blueprint before_request: 400 for a ``q`` the rison parser crashes on.

    FAB's ``@rison`` catches only the parser's own ParserException; prison also raises
    RecursionError, IndexError, TypeError... on some inputs (``q=((``), which FAB's
    ``@safe`` turned into 500s.
    """
    value = request.args.get(API_URI_RIS_KEY)
    if not value:
        return None
    try:
        prison.loads(value)
    except ParserException:
        return None  # FAB's @rison answers it (or accepts it as JSON)
    except Exception:  # noqa: BLE001 - any crash of the parser means bad input
        return WofficeModelRestApi.response(400, message="Not a valid rison argument")
    return None


def require_csrf_for_session_writes() -> Response | None:
    """Blueprint before_request: a cookie-authenticated write needs the CSRF header."""
    if request.method not in UNSAFE_METHODS:
        return None
    if not current_user.is_authenticated or get_request_attr("fs_authn_via") != "session":
        return None  # token clients, or nobody: FAB's @protect answers 401/403
    try:
        csrf.protect()
    except CSRFError as exc:
        return WofficeModelRestApi.response(
            400, message=f"CSRF check failed: {exc.description} Send it as X-CSRFToken."
        )
    return None


class UtcDateTime(fields.DateTime):
    """A naive UTC datetime (as the database stores them) dumped with its offset, so the
    value is the RFC 3339 date-time the spec promises ("2026-11-28T00:31:44+00:00")."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return super()._serialize(value, attr, obj, **kwargs)


class WofficeSchemaConverter(Model2SchemaConverter):
    """FAB's model-to-schema converter, with datetimes dumped as `UtcDateTime`."""

    def _column2field(self, datamodel: Any, column: Any, *args: Any, **kwargs: Any) -> Any:
        field = super()._column2field(datamodel, column, *args, **kwargs)
        if type(field) is fields.DateTime:
            return UtcDateTime(
                required=field.required, allow_none=field.allow_none, dump_only=field.dump_only
            )
        if isinstance(field, fields.Nested) and not field.many and not field.required:
            field.allow_none = True  # an optional relation (no assignee) dumps as null
        return field


def message_bodies(response: Response) -> Response:
    """after_request under /api/: an error body always has a ``message``.

    A missing or bad token is answered by flask-jwt-extended (under FAB's ``@protect``)
    as ``{"msg": ...}``; the spec and every other error of the API say ``message``.
    """
    if response.status_code < 400 or not request.path.startswith("/api/"):
        return response
    body = response.get_json(silent=True) if response.is_json else None
    if isinstance(body, dict) and "message" not in body and "msg" in body:
        body["message"] = body.pop("msg")
        response.set_data(json.dumps(body))
    return response


def _install_message_bodies(app: Any) -> None:
    if message_bodies not in app.after_request_funcs.setdefault(None, []):
        app.after_request(message_bodies)


class WofficeModelRestApi(TenantModelRestApi):
    """Tenant-scoped ModelRestApi whose writes go through services (subclasses)."""

    model2schemaconverter = WofficeSchemaConverter
    allow_browser_login = True
    page_size = 25
    max_page_size = 100
    # Plain marshmallow schemas for writes (set by subclasses that allow them).
    add_model_schema: Schema | None = None
    edit_model_schema: Schema | None = None

    # FAB routes GET on ``/<int:pk>`` but PUT and DELETE on ``/<pk>``, so a pk that is
    # not a number answered GET with 405 (the PUT rule matched) and reached the database
    # on PUT and DELETE. Here all three take integers: anything else is a 404 from the
    # router, whatever the method. Same permission names and spec as FAB's.
    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @safe
    @permission_name("put")
    def put(self, pk: int) -> Response:
        return self.put_headless(pk)

    put.__doc__ = ModelRestApi.put.__doc__

    @expose("/<int:pk>", methods=["DELETE"])
    @protect()
    @safe
    @permission_name("delete")
    def delete(self, pk: int) -> Response:
        return self.delete_headless(pk)

    delete.__doc__ = ModelRestApi.delete.__doc__

    def create_blueprint(self, appbuilder: Any, *args: Any, **kwargs: Any) -> Any:
        blueprint = super().create_blueprint(appbuilder, *args, **kwargs)
        blueprint.before_request(refuse_unparsable_rison)
        blueprint.before_request(require_csrf_for_session_writes)
        blueprint.record_once(lambda state: _install_message_bodies(state.app))
        return blueprint

    # ------------------------------------------------------------------ the spec

    def add_apispec_components(self, api_spec: APISpec) -> None:
        """Publish the schemas of the routes this API has, and only those.

        FAB publishes a POST and a PUT schema built from every column even for a
        read-only API (naming columns such as secrets that the API never serves), and
        apispec warns when one schema object (TagApi's add and edit) gets two names.
        """
        super(ModelRestApi, self).add_apispec_components(api_spec)
        routes = self.include_route_methods or set()
        schemas = [
            (self.list_model_schema_name, self.list_model_schema),
            (self.show_model_schema_name, self.show_model_schema),
        ]
        if "post" in routes:
            schemas.append((self.add_model_schema_name, self.add_model_schema))
        if "put" in routes:
            schemas.append((self.edit_model_schema_name, self.edit_model_schema))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Multiple schemas resolved", UserWarning)
            warnings.filterwarnings("ignore", ".*has already been added", UserWarning)
            for name, schema in schemas:
                api_spec.components.schema(name, schema=schema)

    def add_api_spec(self, api_spec: APISpec) -> None:
        """FAB's operations, corrected where they do not describe what the API answers."""
        super().add_api_spec(api_spec)
        correct_components(api_spec)
        show_ref = {"$ref": f"#/components/schemas/{self.show_model_schema_name}"}
        base = f"/api/{self.version}/{self.resource_name}/"
        for path, operations in api_spec._paths.items():
            if path.startswith(base):
                for method, operation in operations.items():
                    correct_operation(operation, method, "{pk}" in path, show_ref)

    def info_headless(self, **kwargs: Any) -> Response:
        """FAB's ``_info``, without the add/edit field lists of an API that has no such
        route (FAB lists every column then, and the related rows of each relation)."""
        rison_args = kwargs.get("rison", {})
        routes = self.include_route_methods or set()
        skip = set()
        if "post" not in routes:
            skip |= {API_ADD_COLUMNS_RIS_KEY, API_ADD_TITLE_RIS_KEY}
        if "put" not in routes:
            skip |= {API_EDIT_COLUMNS_RIS_KEY, API_EDIT_TITLE_RIS_KEY}
        wanted = rison_args.get("keys") or None
        payload: dict[str, Any] = {}
        for key, merge in self.info._response_key_func_mappings.items():
            if key not in skip and (wanted is None or key in wanted):
                merge(self, payload, **rison_args)
        return self.response(200, **payload)

    # ------------------------------------------------------------------ reading

    def get_list_headless(self, **kwargs: Any) -> Response:
        args = kwargs.get("rison", {})
        page = args.get(API_PAGE_INDEX_RIS_KEY, 0) or 0
        requested = args.get(API_PAGE_SIZE_RIS_KEY)
        if requested is not None and requested < 1:
            return self.response_400(
                message=f"page_size must be between 1 and {self.max_page_size}."
            )
        # Above max_page_size FAB caps the page (the count still says how many there are).
        _page, size = self._sanitize_page_args(0, requested)
        if page < 0 or page * size > MAX_OFFSET:
            return self.response_400(message=f"page must be between 0 and {MAX_OFFSET // size}.")
        try:
            return super().get_list_headless(**kwargs)
        except (ApplyFilterException, StatementError) as exc:
            if isinstance(exc, DBAPIError) and not isinstance(exc, DataError):
                raise  # the database failed, not the request
            # Values the database cannot compare (e.g. text for a number): bad input.
            db.session.rollback()
            return self.response_400(message="Invalid filter value.")

    def _handle_filters_args(self, rison_args: dict[str, Any]) -> Any:
        allowed = self._filters.get_search_filters()
        for item in rison_args.get(API_FILTERS_RIS_KEY, []):
            _check_filter_value(item)
            # FAB silently ignores an unknown operator on a custom-filtered column.
            oprs = {f.arg_name for f in allowed.get(item.get("col"), [])}
            if item.get("opr") not in oprs:
                raise ApiArgumentError(f"Filter {item.get('col')!r}: unknown column or operator.")
        return super()._handle_filters_args(rison_args)

    # ------------------------------------------------------------------ writing

    def post_headless(self) -> Response:
        values = self._load(self.add_model_schema)
        if isinstance(values, Response):
            return values
        tenant_id = current_tenant_id()
        if tenant_id is None:
            return self.response_400(message=NO_TENANT)
        return self._write(lambda: self.create_item(tenant_id, values), 201)

    def put_headless(self, pk: Any) -> Response:
        item = self.datamodel.get(pk, self._base_filters)
        if item is None:
            return self.response_404()
        values = self._load(self.edit_model_schema)
        if isinstance(values, Response):
            return values
        return self._write(lambda: self.update_item(item, values), 200)

    def create_item(self, tenant_id: int, values: dict[str, Any]) -> Any:
        """Create the row from loaded ``values`` through a service (subclasses)."""
        raise NotImplementedError

    def update_item(self, item: Any, values: dict[str, Any]) -> Any:
        """Apply loaded ``values`` to ``item`` through a service (subclasses)."""
        raise NotImplementedError

    def _load(self, schema: Schema | None) -> dict[str, Any] | Response:
        if schema is None:
            return self.response_404()
        if not request.is_json:
            return self.response_400(message="Request is not JSON")
        data = request.get_json()  # malformed JSON: BadRequest, answered 400 by @safe
        if not isinstance(data, dict):
            return self.response_400(message="The body must be a JSON object.")
        try:
            return schema.load(data)
        except SchemaValidationError as err:
            return self.response_422(message=err.messages)

    def _write(self, action: Any, status: int) -> Response:
        try:
            item = action()
            db.session.commit()
        except ValidationError as exc:
            db.session.rollback()
            return self.response_422(message={exc.field or "_schema": [str(exc)]})
        except IntegrityError:
            db.session.rollback()
            return self.response_422(message={"_schema": ["Conflicts with an existing record."]})
        result = self.show_model_schema.dump(item, many=False)
        return self.response(status, id=item.id, result=result)


def _check_filter_value(item: Any) -> None:
    """Refuse filter values FAB would pass on unchecked (lists, objects, NULs)."""
    if not isinstance(item, dict):
        raise ApiArgumentError("Each filter is an object with col, opr and value.")
    value, opr = item.get("value"), item.get("opr")
    values = value if isinstance(value, list) and opr in LIST_OPERATORS else [value]
    for one in values:
        if not isinstance(one, str | int | float | bool):
            raise ApiArgumentError(f"Filter {item.get('col')!r}: unsupported value.")
        if isinstance(one, str) and "\x00" in one:
            raise ApiArgumentError("Filter values must not contain NUL characters.")
    if opr in TEXT_OPERATORS and isinstance(value, int | float) and not isinstance(value, bool):
        item["value"] = str(value)
    elif opr in TEXT_OPERATORS and not isinstance(value, str):
        raise ApiArgumentError(f"Filter {item.get('col')!r}: {opr} takes text.")


# -------------------------------------------------------------------------- contacts
