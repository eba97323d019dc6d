"""The OpenAPI description, per caller (issue 9).

FAB's `OpenApi` describes every registered API to anyone allowed to read the spec, so a
tenant admin's Swagger page listed the platform's APIs too (tenants, plans, payments,
credit notes...), each of which answers that caller 403. This `OpenApi` (same name, so
the same route, endpoint and ``can_get on OpenApi`` permission) describes only the APIs
the caller holds at least one permission on: what the spec and Swagger show is what
the caller can call, and a tenant learns nothing of the platform's surface from it.
"""

from __future__ import annotations

from flask import current_app
from flask_appbuilder.api import BaseApi, expose, protect, safe
from flask_appbuilder.api.manager import OpenApi as FabOpenApi


def may_use(api: BaseApi) -> bool:
    """Whether the current user holds any permission of ``api``."""
    security = current_app.appbuilder.sm
    return any(
        security.has_access(permission, api.class_permission_name)
        for permission in api.base_permissions or ()
    )


class OpenApi(FabOpenApi):
    @expose("/<version>/_openapi")
    @protect()
    @safe
    def get(self, version):
        """The OpenAPI spec of a version, with the APIs the caller may use
        ---
        get:
          description: >-
            The OpenAPI spec of an API version: the operations of every API the caller
            holds a permission on
          parameters:
          - in: path
            schema:
              type: string
            name: version
          responses:
            200:
              description: The OpenAPI spec
              content:
                application/json:
                  schema:
                    type: object
            401:
              $ref: '#/components/responses/401'
            403:
              $ref: '#/components/responses/403'
            404:
              $ref: '#/components/responses/404'
        """
        apis = [
            view
            for view in current_app.appbuilder.baseviews
            if isinstance(view, BaseApi) and view.version == version
        ]
        if not apis:
            return self.response_404()
        api_spec = self._create_api_spec(version)
        for api in apis:
            if may_use(api):
                api.add_api_spec(api_spec)
        return self.response(200, **api_spec.to_dict())
