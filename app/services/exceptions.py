"""Domain exceptions raised by services: `<Noun><Problem>Error` (STYLE 7)."""


class WofficeError(Exception):
    """Base of every domain error; its message is safe to show to the user."""


class ValidationError(WofficeError):
    """Input that breaks a business rule; ``field`` names the offending field."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class TenantValidationError(ValidationError):
    """A tenant's details are invalid."""


class UserValidationError(ValidationError):
    """A user's details are invalid."""


class RoleGrantError(WofficeError):
    """The actor may not grant that role to that user."""


class RoleValidationError(ValidationError):
    """A tenant role's name or permissions are invalid (issue 8)."""


class RoleNotFoundError(WofficeError):
    """No role with that id in the current tenant (another tenant's looks the same)."""


class RoleInUseError(WofficeError):
    """The role is still held by members: reassign them before deleting it."""


class LastTenantAdminError(WofficeError):
    """The change would leave a tenant without an active Tenant Admin."""


class InvitationInvalidError(WofficeError):
    """An invitation link is unknown, used or expired."""


class LoginThrottledError(WofficeError):
    """Too many failed logins for an account or an address."""


class EncryptionKeyError(WofficeError):
    """FIELD_ENCRYPTION_KEYS is empty or holds a value that is not a Fernet key."""


class SecretDecryptionError(WofficeError):
    """A stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS."""
