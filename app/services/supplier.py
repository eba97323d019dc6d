"""The supplier printed on every invoice: checked at start, frozen onto each invoice."""

from __future__ import annotations

from typing import Any

from app.services import gst
from config import ConfigError

SUPPLIER_KEYS = (
    "SUPPLIER_LEGAL_NAME",
    "SUPPLIER_ADDRESS",
    "SUPPLIER_GSTIN",
    "SUPPLIER_STATE_CODE",
    "SUPPLIER_PAN",
    "SUPPLIER_SIGNATORY",
)


def validate_supplier(config: dict[str, Any]) -> None:
    """Refuse to start with a supplier identity an invoice could not carry.

    Unset values are allowed outside production (billing then stays unconfigured);
    production requires them (config.ProductionConfig.REQUIRED).
    """
    if not any(config.get(key) for key in SUPPLIER_KEYS):
        return
    problems = [f"{key} is not set" for key in SUPPLIER_KEYS if not config.get(key)]
    gstin = config.get("SUPPLIER_GSTIN") or ""
    state = config.get("SUPPLIER_STATE_CODE") or ""
    pan = config.get("SUPPLIER_PAN") or ""
    if gstin:
        try:
            gstin = gst.validate_gstin(gstin)
        except ValueError as exc:
            problems.append(f"SUPPLIER_GSTIN: {exc}")
        else:
            if state and gstin[:2] != state:
                problems.append(f"SUPPLIER_STATE_CODE {state} is not the GSTIN's state {gstin[:2]}")
            if pan and gstin[2:12] != pan.upper():
                problems.append("SUPPLIER_PAN is not the PAN inside SUPPLIER_GSTIN")
    if state and state not in gst.POS_NAMES:
        problems.append(f"SUPPLIER_STATE_CODE {state!r} is not a GST state code")
    for key in ("INVOICE_SERIES_PREFIX", "CREDIT_NOTE_SERIES_PREFIX"):
        try:
            gst.format_document_number(config.get(key) or "", "2099-00", 999_999)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    if problems:
        raise ConfigError("Invalid supplier settings: " + "; ".join(problems) + ".")


def supplier_snapshot(config: dict[str, Any]) -> dict[str, Any]:
    """The supplier as printed on an invoice issued now."""
    state = config["SUPPLIER_STATE_CODE"]
    return {
        "legal_name": config["SUPPLIER_LEGAL_NAME"],
        "address": config["SUPPLIER_ADDRESS"],
        "gstin": config["SUPPLIER_GSTIN"],
        "state_code": state,
        "state_name": gst.POS_NAMES.get(state, ""),
        "pan": config["SUPPLIER_PAN"],
        "signatory": config["SUPPLIER_SIGNATORY"],
        "email": config.get("SUPPLIER_EMAIL"),
    }
