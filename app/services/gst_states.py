"""GST state and UT codes (first two digits of a GSTIN; place-of-supply codes).

Source: shared/reference/gst-and-dodo.md A.3. Display names are kept apart from codes.
"""

from __future__ import annotations

GST_STATES: dict[str, str] = {
    "01": "Jammu and Kashmir",
    "02": "Himachal Pradesh",
    "03": "Punjab",
    "04": "Chandigarh",
    "05": "Uttarakhand",
    "06": "Haryana",
    "07": "Delhi",
    "08": "Rajasthan",
    "09": "Uttar Pradesh",
    "10": "Bihar",
    "11": "Sikkim",
    "12": "Arunachal Pradesh",
    "13": "Nagaland",
    "14": "Manipur",
    "15": "Mizoram",
    "16": "Tripura",
    "17": "Meghalaya",
    "18": "Assam",
    "19": "West Bengal",
    "20": "Jharkhand",
    "21": "Odisha",
    "22": "Chhattisgarh",
    "23": "Madhya Pradesh",
    "24": "Gujarat",
    "26": "Dadra and Nagar Haveli and Daman and Diu",
    "27": "Maharashtra",
    "29": "Karnataka",
    "30": "Goa",
    "31": "Lakshadweep",
    "32": "Kerala",
    "33": "Tamil Nadu",
    "34": "Puducherry",
    "35": "Andaman and Nicobar Islands",
    "36": "Telangana",
    "37": "Andhra Pradesh",
    "38": "Ladakh",
    "97": "Other Territory",
}


def state_choices() -> list[tuple[str, str]]:
    """(code, "NN - Name") pairs for select fields, in code order."""
    return [(code, f"{code} - {name}") for code, name in GST_STATES.items()]


def state_name(code: str | None) -> str:
    """The display name of a state code, or '' when unknown."""
    return GST_STATES.get(code or "", "")


# --------------------------------------------------------------------------------------
# Place-of-supply display names and free-text state lookup (additive; used by gst.py).

EXPORT_POS = "96"

# Codes valid as a place of supply: the states/UTs above plus 96 for exports.
POS_NAMES: dict[str, str] = {**GST_STATES, EXPORT_POS: "Other Country"}

# Codes retired by mergers/division, mapped to today's code when unambiguous.
# 25 (Daman and Diu) merged into 26 on 26 Jan 2020; 28 (undivided Andhra Pradesh) is
# ambiguous between 36 and 37, so it is deliberately absent.
LEGACY_CODES: dict[str, str] = {"25": "26"}

# Old names, spellings and abbreviations, written in any case/spacing/punctuation: keys
# are normalised by `_state_key`. Two-letter keys cover vehicle registration prefixes,
# ISO 3166-2:IN (both pre- and post-2023 spellings) and the GST portal's alpha codes.
# "Delhi NCR" is deliberately absent: the NCR spans Delhi, Haryana and Uttar Pradesh.
STATE_ALIASES: dict[str, str] = {
    # 01
    "J&K": "01", "JK": "01", "Jammu Kashmir": "01",
    # 02-04
    "HP": "02", "PB": "03", "CH": "04", "Chandigarh UT": "04",
    # 05
    "Uttaranchal": "05", "UK": "05", "UT": "05", "UA": "05",
    # 06-07
    "HR": "06", "DL": "07", "NCT of Delhi": "07", "National Capital Territory of Delhi": "07",
    "New Delhi": "07", "Delhi NCT": "07",
    # 08-20
    "RJ": "08", "UP": "09", "BR": "10", "SK": "11", "AR": "12", "NL": "13", "MN": "14",
    "MZ": "15", "TR": "16", "ML": "17", "AS": "18", "WB": "19", "Paschim Banga": "19",
    "JH": "20",
    # 21-24
    "Orissa": "21", "OR": "21", "OD": "21", "Chattisgarh": "22", "Chhatisgarh": "22",
    "CG": "22", "CT": "22", "MP": "23", "GJ": "24",
    # 26
    "Dadra and Nagar Haveli": "26", "Daman and Diu": "26", "Dadra Nagar Haveli": "26",
    "DNH": "26", "DNHDD": "26", "DH": "26", "DN": "26", "DD": "26",
    "Dadra and Nagar Haveli & Daman and Diu": "26",
    # 27-38
    "MH": "27", "KA": "29", "GA": "30", "LD": "31", "Lakshadweep Islands": "31",
    "KL": "32", "TN": "33", "Pondicherry": "34", "PY": "34", "Andaman and Nicobar": "35",
    "Andaman Nicobar": "35", "A&N": "35", "AN": "35", "Andaman and Nicobar Island": "35",
    "TS": "36", "TG": "36", "AP": "37", "AD": "37", "LA": "38",
}  # fmt: skip


def _state_key(text: str) -> str:
    """Lower-case letters and digits only, with '&' read as 'and'."""
    text = text.lower().replace("&", " and ")
    key = "".join(ch for ch in text if ch.isalnum())
    if key.endswith("india") and len(key) > len("india"):
        key = key.removesuffix("india")
    return key


_BY_KEY: dict[str, str] = {
    **{_state_key(name): code for code, name in GST_STATES.items()},
    **{_state_key(alias): code for alias, code in STATE_ALIASES.items()},
}


def state_code_for(name_or_code: str | None) -> str | None:
    """The GST state code for a free-text Indian state name, abbreviation or code.

    Accepts names in any case/spacing/punctuation, old names ("Orissa"), vehicle and
    ISO 3166-2 codes ("KA", "IN-KA"), GST codes ("29", "29-Karnataka"). Only meaningful
    for an Indian address (billing country "IN"). Unknown or ambiguous input gives None.
    """
    if not name_or_code or not name_or_code.strip():
        return None
    text = name_or_code.strip()
    head, sep, _rest = text.partition("-")
    if sep and head.strip().isdigit():  # "29-Karnataka" (the POS label format)
        text = head.strip()
    elif sep and head.strip().upper() == "IN":  # ISO 3166-2 "IN-KA"
        text = _rest.strip()
    if text.isdigit():
        code = text.zfill(2) if len(text) <= 2 else ""
        code = LEGACY_CODES.get(code, code)
        return code if code in GST_STATES else None
    return _BY_KEY.get(_state_key(text))
