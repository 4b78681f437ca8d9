"""Comparable features of a FHIR Patient, for identity matching (EMPI).

Patient: http://hl7.org/fhir/R4/patient.html ; HumanName, Address, ContactPoint, Identifier:
http://hl7.org/fhir/R4/datatypes.html

:func:`extract` turns a Patient dict into a :class:`PatientFeatures`: plain, hashable values that
:mod:`ehr.empi.scoring` compares and :mod:`ehr.empi.blocking` turns into blocking keys.

- **Names**, family name first. Every ``Patient.name`` gives one :class:`NameForm` per script:
  Han characters (from ``family``/``given`` or from ``text`` such as ``"张伟"``, split after the
  surname, compound surnames included) with their pinyin, or a romanised name (``"Zhang Wei"``,
  ``"Wei Zhang"``, ``"ZHANG Wei"``, ``"Zhang, Wei"``, or ``family``/``given`` in latin script).
  When the order of a romanised text cannot be told, the form is marked ``ordered=False`` and is
  compared both ways round.
- **Birth date** as its digits (``"19850307"``, or ``"1985"``/``"198503"`` when partial).
- **Sex** from ``Patient.gender`` (``male``/``female``; ``other``/``unknown`` tell nothing).
- **Phones** from ``telecom`` (phone, sms): digits only, ``+86``/``0086`` dropped.
- **Addresses**: province, city, district and street line, with the administrative suffixes
  (省, 市, 区, 县 ...) dropped, so ``浙江省杭州市西湖区`` and ``浙江 杭州 西湖`` agree.
- **Identifiers** by system, as :class:`IdentityConfig` says: the hashed citizen ID
  (:data:`ehr.identifiers.CITIZEN_ID_HASH_SYSTEM`, a certain match when equal and a certain
  non-match when different), deterministic keys (the health card, the insurance number) and each
  hospital's MRN namespace (the same MRN in the same hospital is the same record).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any

from ehr.empi.pinyin import (
    SURNAME_READINGS,
    fold_variants,
    is_han,
    latin_fold,
    normalize_syllable,
    readings,
    segment_pinyin,
    split_han_name,
    surname_syllables,
    syllables,
)
from ehr.identifiers import (
    CITIZEN_ID_HASH_SYSTEM,
    CLEAR_CITIZEN_ID_SYSTEMS,
    HEALTH_CARD_SYSTEM,
    INSURANCE_SYSTEM,
    MRN_SYSTEM_TEMPLATE,
    hash_citizen_id,
    is_valid_citizen_id,
)

__all__ = [
    "INSURANCE_SYSTEM",
    "AddressParts",
    "IdentityConfig",
    "NameForm",
    "PatientFeatures",
    "extract",
    "name_forms",
    "normalize_address",
    "normalize_phone",
]

_MAX_ALTERNATIVES = 16


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """Which identifier systems mean what, for matching.

    - ``citizen_id_systems``: hashed citizen ID. Same value: certain match; both present and
      disjoint: certain non-match.
    - ``deterministic_systems``: one value names one person (health card, insurance number).
      Same value: certain match; different values tell nothing (cards get replaced).
    - ``mrn_prefixes`` / ``mrn_systems``: per-hospital MRN namespaces. The same system and value
      is the same hospital record (certain); a different MRN in the same hospital tells nothing,
      since hospitals have duplicates of their own.
    - ``hmac_key``: the exchange key, to hash a citizen ID that arrives in clear (a ``$match``
      input); without it a clear ID is ignored, never compared in clear.
    """

    citizen_id_systems: frozenset[str] = frozenset({CITIZEN_ID_HASH_SYSTEM})
    deterministic_systems: frozenset[str] = frozenset({HEALTH_CARD_SYSTEM, INSURANCE_SYSTEM})
    mrn_prefixes: tuple[str, ...] = (MRN_SYSTEM_TEMPLATE.split("{", 1)[0],)
    mrn_systems: frozenset[str] = frozenset()
    hmac_key: bytes | None = field(default=None, repr=False)

    def with_source(
        self, *, mrn_system: str | None = None, deterministic: Iterable[str] = ()
    ) -> IdentityConfig:
        """This configuration plus one source's MRN namespace and deterministic systems."""
        return replace(
            self,
            mrn_systems=self.mrn_systems | ({mrn_system} if mrn_system else set()),
            deterministic_systems=self.deterministic_systems | frozenset(deterministic),
        )

    def is_mrn(self, system: str) -> bool:
        return system in self.mrn_systems or system.startswith(self.mrn_prefixes)


DEFAULT_IDENTITY = IdentityConfig()


@dataclass(frozen=True, slots=True)
class NameForm:
    """One way a name is written. ``family``/``given`` are pinyin syllables (canonical reading);
    ``han_family``/``han_given`` the characters (variants folded), empty for a romanised name;
    ``family_alts``/``given_alts`` every pinyin spelling the characters allow, run together."""

    han_family: str
    han_given: str
    family: tuple[str, ...]
    given: tuple[str, ...]
    family_alts: frozenset[str]
    given_alts: frozenset[str]
    ordered: bool = True

    @property
    def is_han(self) -> bool:
        return bool(self.han_family or self.han_given)

    @property
    def family_py(self) -> str:
        return "".join(self.family)

    @property
    def given_py(self) -> str:
        return "".join(self.given)

    @property
    def initials(self) -> str:
        """First letter of the family and of the given name pinyin, e.g. ``"zw"``."""
        return (self.family_py[:1] or "_") + (self.given_py[:1] or "_")


@dataclass(frozen=True, slots=True)
class AddressParts:
    province: str = ""
    city: str = ""
    district: str = ""
    line: str = ""


@dataclass(frozen=True, slots=True)
class PatientFeatures:
    names: tuple[NameForm, ...] = ()
    birth: str | None = None
    sex: str | None = None
    phones: frozenset[str] = frozenset()
    addresses: tuple[AddressParts, ...] = ()
    citizen_ids: frozenset[str] = frozenset()
    #: (system, value) of deterministic identifiers and MRNs
    keys: frozenset[tuple[str, str]] = frozenset()


# ------------------------------------------------------------------------------------- names


def _alternatives(chars: str, first: tuple[str, ...], surname: bool) -> frozenset[str]:
    per_char: list[tuple[str, ...]] = []
    for ch in chars:
        r = readings(ch)
        if r:
            per_char.append(r)
    alts = {"".join(first)}
    if surname and chars in SURNAME_READINGS:
        # a surname polyphone is also typed with its everyday reading (单 -> dan)
        alts.add("".join(syllables(chars)))
    for combo in product(*per_char):
        if len(alts) >= _MAX_ALTERNATIVES:
            break
        alts.add("".join(combo))
    return frozenset(a for a in alts if a)


def _han_form(family: str, given: str) -> NameForm:
    fam_syl = surname_syllables(family)
    giv_syl = syllables(given)
    return NameForm(
        han_family=family,
        han_given=given,
        family=fam_syl,
        given=giv_syl,
        family_alts=_alternatives(family, fam_syl, surname=True),
        given_alts=_alternatives(given, giv_syl, surname=False),
    )


def _latin_syllables(part: str) -> tuple[str, ...]:
    seg = segment_pinyin(part)
    if seg is not None:
        return seg
    folded = latin_fold(part)
    return (normalize_syllable(folded),) if folded else ()


def _latin_form(family: Sequence[str], given: Sequence[str], ordered: bool) -> NameForm:
    fam = tuple(s for p in family for s in _latin_syllables(p))
    giv = tuple(s for p in given for s in _latin_syllables(p))
    return NameForm(
        han_family="",
        han_given="",
        family=fam,
        given=giv,
        family_alts=frozenset({"".join(fam)} - {""}),
        given_alts=frozenset({"".join(giv)} - {""}),
        ordered=ordered,
    )


_SURNAME_PINYIN = frozenset(
    "".join(surname_syllables(s))
    for s in (
        "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜"
        "叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎"
        "贺顾毛郝龚邵万钱严覃武戴莫孔向汤单区解仇朴欧阳司马诸葛上官"
    )
) | frozenset("".join(v) for v in SURNAME_READINGS.values())


def _is_surname(token: str) -> bool:
    return normalize_syllable(latin_fold(token)) in _SURNAME_PINYIN


def _parse_latin_text(text: str) -> NameForm | None:
    if "," in text:
        fam, _, giv = text.partition(",")
        return _latin_form(fam.split(), giv.split(), ordered=True)
    tokens = [t for t in re.split(r"[\s·.]+", text) if latin_fold(t)]
    if not tokens:
        return None
    if len(tokens) == 1:
        return _latin_form([], tokens, ordered=False)
    caps = [t for t in tokens if t.isupper() and len(t) > 1]
    if caps and len(caps) < len(tokens):
        return _latin_form(caps, [t for t in tokens if t not in caps], ordered=True)
    first, last = _is_surname(tokens[0]), _is_surname(tokens[-1])
    if last and not first:
        return _latin_form(tokens[-1:], tokens[:-1], ordered=True)
    return _latin_form(tokens[:1], tokens[1:], ordered=first and not last)


def _han_only(s: str) -> str:
    return fold_variants("".join(ch for ch in s if is_han(ch)))


def _has_han(s: str) -> bool:
    return any(is_han(ch) for ch in s)


def name_forms(name: Mapping[str, Any]) -> list[NameForm]:
    """The forms of one HumanName: Han characters and/or a romanised name."""
    family = str(name.get("family") or "")
    given_parts = tuple(str(g) for g in name.get("given") or [] if g)
    text = str(name.get("text") or "")
    return list(_name_forms(family, given_parts, text))


@functools.lru_cache(maxsize=16_384)
def _name_forms(family: str, given_parts: tuple[str, ...], text: str) -> tuple[NameForm, ...]:
    """:func:`name_forms` of one (family, given, text), cached: names recur across a
    population, and their pinyin readings are the costly part of a registration's features."""
    forms: list[NameForm] = []
    given_joined = "".join(given_parts)
    if _has_han(family) or _has_han(given_joined):
        fam, giv = _han_only(family), _han_only(given_joined)
        if fam and not giv and len(fam) > 1 and not _has_han(text):
            fam, giv = split_han_name(fam)  # the whole name in ``family``
        forms.append(_han_form(fam, giv))
    elif family or given_parts:
        forms.append(_latin_form(family.split(), given_parts, ordered=True))
    if text:
        if _has_han(text):
            if "·" in text or "•" in text:  # a transliterated minority name: no surname split
                forms.append(_han_form("", _han_only(text)))
            else:
                forms.append(_han_form(*split_han_name(_han_only(text))))
        else:
            parsed = _parse_latin_text(text)
            if parsed is not None:
                forms.append(parsed)
    unique: list[NameForm] = []
    for f in forms:
        if (f.family or f.given) and f not in unique:
            unique.append(f)
    return tuple(unique)


# ------------------------------------------------------------------------- phone, address

_DIGITS = re.compile(r"\d+")


def normalize_phone(value: str) -> str | None:
    """``"+86 138-0013-8000"`` -> ``"13800138000"``; ``None`` if fewer than 7 digits remain."""
    digits = "".join(_DIGITS.findall(unicodedata.normalize("NFKC", value)))
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13 and digits[2] == "1":
        digits = digits[2:]
    return digits if len(digits) >= 7 else None


_PROVINCE_SUFFIX = re.compile(r"(壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区|省|市)$")
_CITY_SUFFIX = re.compile(r"(自治州|地区|盟|市)$")
_DISTRICT_SUFFIX = re.compile(r"(自治县|新区|区|县|市|旗)$")
_ADDRESS_TEXT = re.compile(
    r"^(?P<province>.+?(?:省|自治区|特别行政区)|北京市|上海市|天津市|重庆市)?"
    r"(?P<city>.+?(?:自治州|地区|盟|市))?"
    r"(?P<district>.+?(?:区|县|市|旗))?"
    r"(?P<line>.*)$"
)
_LEADING_SUFFIX = re.compile(
    r"^(壮族自治区|回族自治区|维吾尔自治区|自治区|自治州|自治县|省|市|区|县|旗)"
)
_LINE_SYNONYMS = (("号楼", "幢"), ("栋", "幢"), ("座", "幢"), ("单元", "单元"))
_MUNICIPALITIES = frozenset({"北京", "上海", "天津", "重庆"})


def _strip(pattern: re.Pattern[str], s: str) -> str:
    s = "".join(unicodedata.normalize("NFKC", s).split())
    stripped = pattern.sub("", s)
    return stripped if len(stripped) >= 2 else s


def _norm_line(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).casefold()
    s = "".join(ch for ch in s if ch.isalnum())
    for old, new in _LINE_SYNONYMS:
        s = s.replace(old, new)
    return s.removesuffix("室")


def normalize_address(addr: Mapping[str, Any]) -> AddressParts | None:
    """Province, city, district (suffixes dropped) and the street line of a FHIR Address.
    An address given only as ``text`` is split on its administrative suffixes."""
    province = str(addr.get("state") or "")
    city = str(addr.get("city") or "")
    district = str(addr.get("district") or "")
    line = "".join(str(x) for x in addr.get("line") or [])
    text = "".join(str(addr.get("text") or "").split())
    if not (province or city or district or line) and text:
        m = _ADDRESS_TEXT.match(unicodedata.normalize("NFKC", text))
        if m:
            province, city = m["province"] or "", m["city"] or ""
            district, line = m["district"] or "", m["line"] or ""
    province = _strip(_PROVINCE_SUFFIX, province) if province else ""
    city = "" if city in {"市辖区", "县"} else city
    city = _strip(_CITY_SUFFIX, city) if city else ""
    if not city and province in _MUNICIPALITIES:
        city = province
    district = _strip(_DISTRICT_SUFFIX, district) if district else ""
    line = _norm_line(line)
    for prefix in (province, city, district):  # a line that repeats the region
        if prefix and line.startswith(prefix):
            line = _LEADING_SUFFIX.sub("", line[len(prefix) :])
    if not (province or city or district or line):
        return None
    return AddressParts(province, city, district, line)


# ----------------------------------------------------------------------------- the patient

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def _birth(value: Any) -> str | None:
    m = _DATE.match(str(value or ""))
    return "".join(g for g in m.groups() if g) if m else None


def extract(
    patient: Mapping[str, Any], config: IdentityConfig = DEFAULT_IDENTITY
) -> PatientFeatures:
    """The comparable features of a Patient resource (a dict as stored or as received)."""
    names: list[NameForm] = []
    for n in patient.get("name") or []:
        for f in name_forms(n):
            if f not in names:
                names.append(f)
    gender = patient.get("gender")
    phones = {
        p
        for t in patient.get("telecom") or []
        if t.get("system") in (None, "phone", "sms") and t.get("value")
        for p in [normalize_phone(str(t["value"]))]
        if p
    }
    addresses: list[AddressParts] = []
    for a in patient.get("address") or []:
        parts = normalize_address(a)
        if parts is not None and parts not in addresses:
            addresses.append(parts)
    citizen: set[str] = set()
    keys: set[tuple[str, str]] = set()
    for ident in patient.get("identifier") or []:
        system, value = ident.get("system"), ident.get("value")
        if not system or not value:
            continue
        value = str(value).strip()
        if system in config.citizen_id_systems:
            citizen.add(value.lower())
        elif system in CLEAR_CITIZEN_ID_SYSTEMS:
            if config.hmac_key and is_valid_citizen_id(value):
                citizen.add(hash_citizen_id(value, config.hmac_key))
        elif system in config.deterministic_systems or config.is_mrn(system):
            keys.add((system, value))
    return PatientFeatures(
        names=tuple(names),
        birth=_birth(patient.get("birthDate")),
        sex=gender if gender in ("male", "female") else None,
        phones=frozenset(phones),
        addresses=tuple(addresses),
        citizen_ids=frozenset(citizen),
        keys=frozenset(keys),
    )
