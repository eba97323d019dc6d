"""Unknown FAB actions answer 404 on every view (issue 9's URL-map probe).

FAB's ``/<view>/action/<name>/<pk>`` and ``/<view>/action_post`` look the action up and
read its permission before checking anything, so an unknown name was a 500 on every
view without the tenant base's guard (plans, permissions, registers, ...). This
``before_request`` hook answers 404 first, for all of them.
"""

from __future__ import annotations

from flask import Flask, abort, current_app, request

ACTION_ENDPOINTS = ("action", "action_post")


def refuse_unknown_actions() -> None:
    endpoint = request.endpoint or ""
    if "." not in endpoint or endpoint.rsplit(".", 1)[1] not in ACTION_ENDPOINTS:
        return
    view = _view_of(request.blueprint)
    actions = getattr(view, "actions", None)
    if view is None or actions is None:
        return
    name = (request.view_args or {}).get("name") or request.form.get("action", "")
    if name not in actions:
        abort(404)


def _view_of(blueprint: str | None):
    for view in current_app.appbuilder.baseviews:
        if getattr(view, "blueprint", None) is not None and view.blueprint.name == blueprint:
            return view
    return None


def install(app: Flask) -> None:
    app.before_request(refuse_unknown_actions)
