"""Chinese identifiers: the resident citizen ID number and the identifier systems of the exchange.

FHIR Identifier: http://hl7.org/fhir/R4/datatypes.html#Identifier ;
Patient.identifier: http://hl7.org/fhir/R4/patient-definitions.html#Patient.identifier

**Citizen ID (公民身份号码, GB 11643-1999).** 18 characters: a 6-digit region code (GB/T 2260),
the birth date ``YYYYMMDD``, a 3-digit sequence number whose last digit is odd for men and even
for women, and an ISO 7064 MOD 11-2 check character (``0``-``9`` or ``X``).

**The exchange never stores a citizen ID in clear.** A Patient carries it as one identifier::

    {"use": "official",
     "type": {"coding": [{"system": V2_0203, "code": "NI"}], "text": "居民身份证号（HMAC-SHA256）"},
     "system": CITIZEN_ID_HASH_SYSTEM,
     "value": "<hex HMAC-SHA256 of the normalised ID under the exchange key>",
     "extension": [{"url": MASKED_VALUE_EXTENSION, "valueString": "110101************"}]}

- ``value`` is keyed (HMAC), so a copy of the database cannot be turned back into IDs by
  hashing the small space of plausible numbers; whoever holds the key can match a presented ID
  (a search on ``CITIZEN_ID_SYSTEM|<clear>`` is rewritten to ``CITIZEN_ID_HASH_SYSTEM|<hmac>``).
- The masked form rides in an extension because Identifier has no display element and
  ``type.text`` names the kind of identifier, not the value.
- The stored mask keeps the region code only (:data:`STORED_MASK_HEAD`, :data:`STORED_MASK_TAIL`).
  The usual receipt mask ``110101********123X`` hides only the birth date, which
  ``Patient.birthDate`` states anyway: that mask plus the resource would be the clear ID.
  The last four characters (sequence + check) are the only part the rest of the record does
  not give away, so they are not stored.

System URIs: ``urn:oid:2.16.156.10011.1.3`` is the identifier root the national health
information standards (WS/T 500 CDA headers, ``<id root=... extension="身份证号"/>``) use for the
patient's citizen ID. ``2.16.156.10011.1.5`` (which an early draft suggested) is the root of the
*medical institution organisation code* in the same standards, so it is
:data:`ORGANIZATION_CODE_SYSTEM` here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date
from typing import Any

from ehr.codesystems import CANONICAL_BASE

__all__ = [
    "INSURANCE_SYSTEM",
    "CITIZEN_ID_SYSTEM",
    "CITIZEN_ID_HASH_SYSTEM",
    "NATIONAL_HEALTH_CARD_SYSTEM",
    "CLEAR_CITIZEN_ID_SYSTEMS",
    "MASKED_VALUE_EXTENSION",
    "HEALTH_CARD_SYSTEM",
    "HEALTH_RECORD_SYSTEM",
    "ORGANIZATION_CODE_SYSTEM",
    "PRACTITIONER_LICENCE_SYSTEM",
    "MRN_SYSTEM_TEMPLATE",
    "V2_0203",
    "STORED_MASK_HEAD",
    "STORED_MASK_TAIL",
    "mrn_system",
    "normalize_citizen_id",
    "citizen_id_check_digit",
    "is_valid_citizen_id",
    "citizen_id_birth_date",
    "citizen_id_sex",
    "make_citizen_id",
    "mask_citizen_id",
    "hash_citizen_id",
    "citizen_id_identifier",
    "org_code_check_digit",
    "is_valid_org_code",
]

#: the citizen ID in clear (患者身份证号标识). Accepted on input and in searches, never stored.
CITIZEN_ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"
#: HMAC-SHA256 of the citizen ID under the exchange key: what Patient.identifier stores
CITIZEN_ID_HASH_SYSTEM = f"{CANONICAL_BASE}/sid/citizen-id-hash"
#: 居民健康卡号. On the national card it equals the citizen ID, so it is just as sensitive.
NATIONAL_HEALTH_CARD_SYSTEM = "urn:oid:2.16.156.10011.1.19"
#: systems whose values are citizen IDs in clear: protect them before anything is written
CLEAR_CITIZEN_ID_SYSTEMS = frozenset({CITIZEN_ID_SYSTEM, NATIONAL_HEALTH_CARD_SYSTEM})
#: Identifier extension (valueString): a masked rendering of a value that is not stored
MASKED_VALUE_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/identifier-masked-value"

#: the exchange's own card namespace: the pseudonymous card serial ``cid`` (see CARD.md)
HEALTH_CARD_SYSTEM = f"{CANONICAL_BASE}/sid/health-card"

#: 医保号: the medical-insurance number (a deterministic identity key for the EMPI).
INSURANCE_SYSTEM = f"{CANONICAL_BASE}/sid/insurance"
#: 城乡居民健康档案编号 (17 digits: county 6 + street 3 + community 3 + sequence 5)
HEALTH_RECORD_SYSTEM = "urn:oid:2.16.156.10011.1.2"
#: 医疗机构组织机构代码 (GB 11714, 9 characters)
ORGANIZATION_CODE_SYSTEM = "urn:oid:2.16.156.10011.1.5"
#: 医师/护士执业证书编码
PRACTITIONER_LICENCE_SYSTEM = f"{CANONICAL_BASE}/sid/practitioner-licence"
#: one medical-record-number namespace per hospital, keyed by the Organization id
MRN_SYSTEM_TEMPLATE = CANONICAL_BASE + "/sid/mrn/{org}"

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

#: what the stored mask keeps: the region code, nothing of the sequence or check digit
STORED_MASK_HEAD = 6
STORED_MASK_TAIL = 0

_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
_CHECK = "10X98765432"  # indexed by (weighted sum mod 11)
_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$")
# GB/T 2260 province-level prefixes; 71 Taiwan, 81/82/83 HK/Macau/Taiwan residence permits
_PROVINCES = frozenset(
    [
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
        "83",
    ]
)
_EARLIEST_BIRTH = date(1880, 1, 1)


def mrn_system(org_id: str) -> str:
    """The MRN namespace of the hospital ``Organization/<org_id>``."""
    return MRN_SYSTEM_TEMPLATE.format(org=org_id)


def normalize_citizen_id(s: str) -> str:
    """Strip surrounding white space and upper-case a trailing ``x``."""
    return s.strip().upper()


def citizen_id_check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("the check digit needs exactly 17 ASCII digits")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def citizen_id_birth_date(s: str) -> date:
    """The birth date coded in an 18-character ID; ``ValueError`` if it is not a date."""
    s = normalize_citizen_id(s)
    if not _SHAPE.match(s):
        raise ValueError("not an 18-character citizen ID")
    return date(int(s[6:10]), int(s[10:12]), int(s[12:14]))


def citizen_id_sex(s: str) -> str:
    """GB/T 2261.1 sex code the ID states: ``"1"`` (odd 17th digit, male) or ``"2"``."""
    s = normalize_citizen_id(s)
    if not _SHAPE.match(s):
        raise ValueError("not an 18-character citizen ID")
    return "1" if int(s[16]) % 2 else "2"


def is_valid_citizen_id(s: str, *, today: date | None = None) -> bool:
    """Shape, region prefix, a real birth date not after ``today`` (and not before 1880), and the
    check character. A lower-case ``x`` is accepted."""
    s = normalize_citizen_id(s)
    if not _SHAPE.match(s) or s[:2] not in _PROVINCES:
        return False
    try:
        born = citizen_id_birth_date(s)
    except ValueError:
        return False
    if not _EARLIEST_BIRTH <= born <= (today or date.today()):
        return False
    return citizen_id_check_digit(s[:17]) == s[17]


def make_citizen_id(region6: str, birth: date, seq3: int, female: bool) -> str:
    """Build a valid ID. The sequence number's last digit must be even for a woman, odd for a
    man (GB 11643 §5.3); a mismatch is a ``ValueError`` rather than a silent adjustment."""
    if len(region6) != 6 or not region6.isascii() or not region6.isdigit():
        raise ValueError("region code must be 6 digits")
    if not 0 <= seq3 <= 999:
        raise ValueError("sequence number must be 0..999")
    if (seq3 % 2 == 0) != female:
        raise ValueError("sequence number parity must be even for female, odd for male")
    first17 = f"{region6}{birth:%Y%m%d}{seq3:03d}"
    return first17 + citizen_id_check_digit(first17)


def mask_citizen_id(s: str, head: int = 6, tail: int = 4) -> str:
    """``11010519491231002X`` -> ``110105********002X`` (keep ``head`` and ``tail`` characters).

    The default is the familiar receipt mask; it hides only the birth date. Do not store it next
    to a birth date: see the module docstring and :func:`citizen_id_identifier`.
    """
    s = normalize_citizen_id(s)
    if head < 0 or tail < 0 or head + tail > len(s):
        raise ValueError("head and tail must fit the value")
    return s[:head] + "*" * (len(s) - head - tail) + (s[len(s) - tail :] if tail else "")


def hash_citizen_id(s: str, key: bytes) -> str:
    """Hex HMAC-SHA256 of the normalised ID under ``key`` (the exchange secret from settings)."""
    if not key:
        raise ValueError("an HMAC key is required")
    return hmac.new(key, normalize_citizen_id(s).encode("ascii"), hashlib.sha256).hexdigest()


def citizen_id_identifier(s: str, key: bytes, *, today: date | None = None) -> dict[str, Any]:
    """The protected Patient.identifier for a citizen ID (hash + region-only mask).

    Raises ``ValueError`` for an invalid ID, so a typo never becomes a stored identifier.
    """
    if not is_valid_citizen_id(s, today=today):
        raise ValueError("invalid citizen ID")
    masked = mask_citizen_id(s, STORED_MASK_HEAD, STORED_MASK_TAIL)
    return {
        "extension": [{"url": MASKED_VALUE_EXTENSION, "valueString": masked}],
        "use": "official",
        "type": {
            "coding": [
                {
                    "system": V2_0203,
                    "code": "NI",
                    "display": "National unique individual identifier",
                }
            ],
            "text": "居民身份证号（HMAC-SHA256）",
        },
        "system": CITIZEN_ID_HASH_SYSTEM,
        "value": hash_citizen_id(s, key),
    }


# ----------------------------------------------------------- organisation code (GB 11714-1997)

_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_SHAPE = re.compile(r"^[0-9A-Z]{8}[0-9X]$")


def org_code_check_digit(first8: str) -> str:
    """GB 11714-1997 check character: ``11 - (Σ value·weight mod 11)``, 10 -> ``X``, 11 -> ``0``;
    digits count 0-9 and letters A-Z count 10-35."""
    if len(first8) != 8 or not re.fullmatch(r"[0-9A-Z]{8}", first8):
        raise ValueError("an organisation code body is 8 digits or upper-case letters")
    total = sum(int(c, 36) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    c9 = 11 - total % 11
    return "X" if c9 == 10 else "0" if c9 == 11 else str(c9)


def is_valid_org_code(s: str) -> bool:
    s = s.strip().upper().replace("-", "")
    return bool(_ORG_SHAPE.match(s)) and org_code_check_digit(s[:8]) == s[8]
