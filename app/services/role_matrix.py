"""The permission matrix a tenant admin composes roles from (issue 8).

Rows are the tenant's resources, columns the usual actions (list/show, add, edit,
delete) plus special permissions. Each cell names the FAB (permission, view menu) pairs
it grants: the screens and the REST API of the resource together, so a role never
grants a screen and forgets its API (or the reverse). The matrix is the whole of what a
tenant can grant: anything not in a cell (tenants, plans, every invoice, compliance,
other tenants' audit, role management itself) is outside it, whatever is posted.

A cell key is ``<resource>.<column>``, e.g. ``contacts.list`` or ``campaigns.launch``.
`BASELINE` is granted to every custom role: a member's own account page (including
their own privacy rights, P13-P16), the public registers everyone may read
(sub-processors, the privacy policy: P11, P24), and the API's spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Pair = tuple[str, str]  # (permission name, view menu name), FAB's vocabulary

COLUMNS: tuple[tuple[str, str], ...] = (
    ("list", "List / show"),
    ("add", "Add"),
    ("edit", "Edit"),
    ("delete", "Delete"),
)
# The menu category every Business screen sits under (app/views/__init__.py).
BUSINESS_MENU: Pair = ("menu_access", "Business")
AUDIT_MENU: Pair = ("menu_access", "Audit")

BASELINE: tuple[Pair, ...] = (
    ("can_index", "MyAccountView"),
    ("can_privacy_request", "MyAccountView"),
    ("can_list", "SubProcessors"),
    ("can_show", "SubProcessors"),
    ("menu_access", "SubProcessors"),
    ("menu_access", "Privacy"),
    ("menu_access", "PrivacyPolicy"),
    # The API's spec and Swagger UI, for members scripting with an API key (issue 9).
    ("can_get", "OpenApi"),
    ("can_show", "SwaggerView"),
    ("can_get", "MenuApi"),
)


@dataclass(frozen=True)
class Special:
    key: str
    label: str
    pairs: tuple[Pair, ...]
    help: str = ""


@dataclass(frozen=True)
class Resource:
    """One row of the matrix: the FAB pairs of each column, and its specials."""

    key: str
    label: str
    cells: dict[str, tuple[Pair, ...]]
    specials: tuple[Special, ...] = ()
    menu: Pair | None = BUSINESS_MENU  # the category its menu entries sit under
    help: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def columns(self) -> list[tuple[str, tuple[Pair, ...] | None]]:
        """(column key, pairs or None when the resource has no such action)."""
        return [(key, self.cells.get(key)) for key, _ in COLUMNS]


def _pairs(view: str, *perms: str) -> tuple[Pair, ...]:
    return tuple((perm, view) for perm in perms)


READ = ("can_list", "can_show", "menu_access")
API_READ = ("can_get", "can_info")

RESOURCES: tuple[Resource, ...] = (
    Resource(
        "team",
        "Team",
        {
            "list": _pairs("Team", *READ) + _pairs("TeamApi", *API_READ),
            "add": _pairs("Team", "can_add", "resend"),
            "edit": _pairs("Team", "can_edit", "deactivate", "reactivate"),
        },
        help="Members can invite and edit people, but grant only roles within their own "
        "permissions; only a Tenant Admin manages roles.",
    ),
    Resource(
        "contacts",
        "Contacts",
        {
            "list": _pairs("Contacts", *READ) + _pairs("ContactApi", *API_READ),
            "add": _pairs("Contacts", "can_add") + _pairs("ContactApi", "can_post"),
            "edit": _pairs("Contacts", "can_edit", "can_consent", "can_opt_out", "opt_out")
            + _pairs("Contacts", "can_tag", "tag")
            + _pairs("ContactApi", "can_put", "can_consent"),
        },
        specials=(
            Special("export", "Export contacts", _pairs("Contacts", "can_export")),
            Special(
                "import",
                "Import contacts",
                _pairs("ContactImports", "can_list", "can_show", "can_upload")
                + _pairs("ContactImports", "can_mapping", "can_errors")
                + (("menu_access", "Imports"),),
            ),
        ),
    ),
    Resource(
        "tags",
        "Tags",
        {
            "list": _pairs("Tags", *READ) + _pairs("TagApi", *API_READ),
            "add": _pairs("Tags", "can_add") + _pairs("TagApi", "can_post"),
            "edit": _pairs("Tags", "can_edit") + _pairs("TagApi", "can_put"),
            "delete": _pairs("Tags", "can_delete") + _pairs("TagApi", "can_delete"),
        },
    ),
    Resource(
        "conversations",
        "Conversations",
        {
            "list": _pairs("Conversations", *READ)
            + _pairs("Messages", *READ)
            + _pairs("ConversationApi", *API_READ)
            + _pairs("MessageApi", *API_READ),
            "edit": _pairs("Conversations", "can_edit") + _pairs("ConversationApi", "can_put"),
        },
        specials=(
            Special("reply", "Reply", _pairs("Conversations", "can_reply")),
            Special(
                "view_all",
                "View all conversations",
                _pairs("Conversations", "can_view_all"),
                help="Without it a member sees only the conversations assigned to them.",
            ),
        ),
    ),
    Resource(
        "templates",
        "Templates",
        {"list": _pairs("Templates", *READ)},
        specials=(Special("sync", "Sync from WhatsApp", _pairs("Templates", "can_sync")),),
    ),
    Resource(
        "campaigns",
        "Campaigns",
        {
            "list": _pairs("Campaigns", *READ, "can_recipients"),
            "add": _pairs("Campaigns", "can_add"),
            "edit": _pairs("Campaigns", "can_edit"),
        },
        specials=(
            Special("launch", "Launch campaigns", _pairs("Campaigns", "can_launch")),
            Special(
                "control",
                "Pause, resume, cancel, retry",
                _pairs("Campaigns", "can_control"),
            ),
        ),
    ),
    Resource(
        "analytics",
        "Analytics",
        {"list": _pairs("Analytics", "can_index", "menu_access")},
    ),
    Resource(
        "invoices",
        "Invoices",
        {"list": _pairs("TenantInvoices", *READ)},
    ),
    Resource(
        "api_keys",
        "API keys",
        {
            "list": _pairs("ApiKeys", "can_list", "menu_access"),
            "add": _pairs("ApiKeys", "can_add"),
            "delete": _pairs("ApiKeys", "can_revoke"),
        },
    ),
    Resource(
        "privacy",
        "Privacy requests",
        {},  # a member's own requests are on their account page (baseline)
        specials=(
            Special(
                "file",
                "File requests about contacts",
                _pairs("MyAccountView", "can_contact_request"),
                help="On behalf of a contact, from My account (P13-P16).",
            ),
        ),
    ),
    Resource(
        "audit",
        "Audit",
        {
            "list": _pairs("Audit trail", "menu_access")
            + _pairs("Audit", "can_list", "can_show", "can_get", "can_info")
            + _pairs("LoginActivity", "can_list")
            + (("menu_access", "Login activity"),),
        },
        specials=(Special("export", "Export the audit trail", _pairs("Audit", "can_export")),),
        menu=AUDIT_MENU,
    ),
)

RESOURCE_BY_KEY = {r.key: r for r in RESOURCES}


def all_cells() -> dict[str, tuple[Resource, tuple[Pair, ...]]]:
    """Every cell key -> (resource, the pairs it grants)."""
    cells: dict[str, tuple[Resource, tuple[Pair, ...]]] = {}
    for resource in RESOURCES:
        for column, pairs in resource.cells.items():
            cells[f"{resource.key}.{column}"] = (resource, pairs)
        for special in resource.specials:
            cells[f"{resource.key}.{special.key}"] = (resource, special.pairs)
    return cells


def normalise(cells: set[str]) -> set[str]:
    """Any action on a resource implies reading it: add the list/show cell."""
    out = set(cells)
    for key in cells:
        resource = key.split(".", 1)[0]
        if f"{resource}.list" in all_cells():
            out.add(f"{resource}.list")
    return out


def pairs_for(cells: set[str]) -> set[Pair]:
    """The FAB pairs granted by ``cells`` (normalised), with the menus they sit under
    and the baseline."""
    known = all_cells()
    pairs: set[Pair] = set(BASELINE)
    for key in normalise(cells):
        resource, granted = known[key]
        pairs.update(granted)
        if resource.menu:
            pairs.add(resource.menu)
    return pairs


def cells_for(pairs: set[Pair]) -> set[str]:
    """The cells fully granted by ``pairs`` (what a stored role shows in the matrix)."""
    return {key for key, (_, granted) in all_cells().items() if granted and set(granted) <= pairs}


def grantable_pairs() -> set[Pair]:
    """Every pair any matrix cell can grant: the ceiling of a tenant's roles."""
    pairs: set[Pair] = set(BASELINE)
    for resource, granted in all_cells().values():
        pairs.update(granted)
        if resource.menu:
            pairs.add(resource.menu)
    return pairs
