"""Match scoring: deterministic identifier rules, then Fellegi–Sunter log-likelihood weights.

Patient/$match (the match grades): http://hl7.org/fhir/R4/patient-operation-match.html ;
match-grade extension: http://hl7.org/fhir/R4/extension-match-grade.html ;
Fellegi & Sunter, "A Theory for Record Linkage", JASA 64 (1969).

**Rules first.**

- The same hashed citizen ID, or the same deterministic identifier (health card, insurance
  number, the same MRN of the same hospital): ``certain``.
- A hashed citizen ID on both sides and none in common: ``certainly-not``.
- A shared deterministic identifier *and* different citizen IDs is a data error: ``possible``
  (rule ``conflict``), so a person looks at it.

**Then the evidence.** Each field is compared to an agreement level; the level's weight is
``log2(m / u)`` where ``m = P(level | same person)`` and ``u = P(level | different people)``
(:data:`DEFAULT_LEVELS`). The total is the sum over the fields present on both sides; a field
missing on either side adds nothing. Two refinements keep the independence assumption honest:

- *Name frequency.* When a :class:`NameFrequency` is given (the blocking index is one), the ``u``
  of an exact or same-pinyin name is that name's share of the population: agreeing on 王伟 is
  weaker evidence than agreeing on 欧阳娜娜 (Splink calls this a term-frequency adjustment).
- *Households.* People of one household share a phone and an address, and twins share a birth
  date too. When the phone or the street address agrees, an exact birth date is weighed with its
  within-household ``u`` (``exact-household``), and an address that agrees with a phone that
  agrees is weighed as ``household-with-phone`` (the second shared contact adds little).

**Grades** (``MatchConfig.upper``/``lower`` in bits): ``probable`` (link automatically) at or
above ``upper``, ``possible`` (a review task) at or above ``lower``, else ``certainly-not``.
Auto-linking also needs the name to agree (``exact``, ``pinyin`` or ``swapped``): a one-character
difference is a typo or a sibling (双胞胎 often share a generation character), which no field
here can tell apart, so it goes to review.

Every :class:`MatchScore` lists its field contributions (field, level, weight): the explanation.
:func:`resolve` grades one registration against all its candidates: more than one ``probable``
candidate means nobody is linked automatically.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ehr.empi.features import AddressParts, NameForm, PatientFeatures

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_LEVELS",
    "FieldScore",
    "Grade",
    "MatchConfig",
    "MatchScore",
    "NameFrequency",
    "compare_addresses",
    "compare_birth",
    "compare_names",
    "han_name_key",
    "pinyin_name_key",
    "resolve",
    "score",
]

Grade = Literal["certain", "probable", "possible", "certainly-not"]

#: (m, u) per field and agreement level, from the order of magnitudes of a regional population
#: (~30,000 birth dates, household of ~3, 100 surnames giving 85 %); checked by bench/bench_empi.py
DEFAULT_LEVELS: Mapping[str, Mapping[str, tuple[float, float]]] = {
    "name": {
        "exact": (0.80, 1e-4),  # same characters (variants folded); u: name frequency if known
        "pinyin": (0.12, 3e-4),  # same pinyin: romanised on one side, or a homophone (IME typo)
        "swapped": (0.02, 1e-5),  # family and given name exchanged
        "typo": (0.04, 2e-3),  # one character / syllable / letter differs: typo or sibling
        "family-only": (0.003, 0.05),  # same family name, another given name
        "family-only-household": (0.003, 0.5),  # ... within a household, where it is the rule
        "disagree": (0.005, 0.9),
    },
    "birthDate": {
        "exact": (0.93, 3.5e-5),
        "exact-household": (0.93, 0.03),  # within a household: twins
        "transposed": (0.01, 4e-5),  # day and month exchanged
        "one-digit": (0.03, 1.5e-3),  # one digit wrong, or two neighbours exchanged
        "same-year": (0.01, 0.0125),
        "disagree": (0.02, 0.985),
    },
    "gender": {"agree": (0.98, 0.5), "disagree": (0.02, 0.5)},
    "phone": {"agree": (0.65, 1e-4), "disagree": (0.35, 0.9999)},
    "address": {
        "household": (0.55, 5e-5),  # same street line (and district)
        "household-with-phone": (0.8, 0.5),  # ... when the phone agrees too
        "district": (0.2, 0.1),
        "city": (0.15, 0.55),
        "disagree": (0.1, 0.35),
    },
}

_NAME_ORDER = ("exact", "pinyin", "swapped", "typo", "family-only", "disagree")


class NameFrequency(Protocol):
    """Share of the population carrying a name key (:func:`han_name_key`,
    :func:`pinyin_name_key`); ``None`` when unknown."""

    def name_frequency(self, key: str) -> float | None: ...


@dataclass(frozen=True, slots=True)
class FieldScore:
    field: str
    level: str
    weight: float


@dataclass(frozen=True, slots=True)
class MatchScore:
    """``total`` in bits (log2 likelihood ratio); ``rule`` names the deterministic rule that
    decided, if any; ``fields`` the per-field contributions; ``probability`` a monotone 0..1
    rendering for ``Bundle.entry.search.score`` (0.99 at the upper threshold)."""

    total: float
    grade: Grade
    fields: tuple[FieldScore, ...]
    rule: str | None = None
    probability: float = 0.0

    def explain(self) -> str:
        parts = [f"{f.field}={f.level} ({f.weight:+.1f})" for f in self.fields]
        head = f"{self.grade} {self.total:+.1f} bits"
        return head + (f" [rule {self.rule}]" if self.rule else "") + ": " + ", ".join(parts)


@dataclass(frozen=True)
class MatchConfig:
    """Thresholds (bits) and level probabilities. Defaults chosen with bench/bench_empi.py."""

    upper: float = 23.0
    lower: float = 14.0
    levels: Mapping[str, Mapping[str, tuple[float, float]]] = field(
        default_factory=lambda: DEFAULT_LEVELS
    )
    #: the smallest name ``u`` a frequency may give (one person in 100,000)
    name_u_floor: float = 1e-5
    #: name levels that may be linked automatically
    auto_link_name_levels: frozenset[str] = frozenset({"exact", "pinyin", "swapped"})

    def __post_init__(self) -> None:
        if self.lower > self.upper:
            raise ValueError("the lower threshold must not exceed the upper one")
        weights = {
            (f, lvl): math.log2(m / u)
            for f, lv in self.levels.items()
            for lvl, (m, u) in lv.items()
        }
        object.__setattr__(self, "_weights", weights)

    def weight(self, field_name: str, level: str) -> float:
        return self._weights[(field_name, level)]  # type: ignore[attr-defined,no-any-return]

    def m(self, field_name: str, level: str) -> float:
        return self.levels[field_name][level][0]


DEFAULT_CONFIG = MatchConfig()


# ------------------------------------------------------------------------------------- names


def han_name_key(f: NameForm) -> str:
    return f"han:{f.han_family}{f.han_given}"


def pinyin_name_key(f: NameForm) -> str:
    return f"py:{f.family_py}|{f.given_py}"


def _hamming1(a: str, b: str) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


def _edit1(a: str, b: str) -> bool:
    """Damerau distance exactly 1 (one substitution, insertion, deletion or transposition)."""
    if a == b:
        return False
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diffs = [i for i in range(la) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and a[diffs[0]] == b[diffs[1]]
            and a[diffs[1]] == b[diffs[0]]
        )
    if la > lb:
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


def _one_differs(
    fam_a: Sequence[str], giv_a: Sequence[str], fam_b: Sequence[str], giv_b: Sequence[str]
) -> bool:
    """One character (or syllable) differs, and it is not the whole given name: 张晓明/张晓鸣
    and 王伟/玉伟 are typos, 王伟/王强 are two names."""
    if len(fam_a) != len(fam_b) or len(giv_a) != len(giv_b) or not giv_a:
        return False
    fam_diff = sum(p != q for p, q in zip(fam_a, fam_b, strict=True))
    giv_diff = sum(p != q for p, q in zip(giv_a, giv_b, strict=True))
    return fam_diff + giv_diff == 1 and (fam_diff == 1 or len(giv_a) > 1)


def _compare_forms(x: NameForm, y: NameForm) -> str:
    if x.is_han and y.is_han:
        return _compare_han(x, y)
    # romanised on one side at least: any reading of the characters may have been typed
    straight = bool(x.family_alts & y.family_alts) and bool(x.given_alts & y.given_alts)
    crossed = bool(x.family_alts & y.given_alts) and bool(x.given_alts & y.family_alts)
    if straight or (crossed and not (x.ordered and y.ordered)):
        return "pinyin"
    if x.family_py + x.given_py == y.family_py + y.given_py:
        return "pinyin"  # the same syllables split differently
    if crossed:
        return "swapped"
    if _one_differs(x.family, x.given, y.family, y.given):
        return "typo"
    if _edit1(x.family_py + x.given_py, y.family_py + y.given_py):
        return "typo"
    return "family-only" if x.family_alts & y.family_alts else "disagree"


def _compare_han(x: NameForm, y: NameForm) -> str:
    """Both in characters. Homophones compare the usual readings only: a rare reading of one
    character (青 can be read jing) must not make 李青 sound like 李静."""
    if x.han_family + x.han_given == y.han_family + y.han_given:
        return "exact"
    if x.family_py + x.given_py == y.family_py + y.given_py:
        return "pinyin"
    if x.family_py == y.given_py and x.given_py == y.family_py:
        return "swapped"  # in characters or in sound (a swap and a homophone typo)
    if _one_differs(x.han_family, x.han_given, y.han_family, y.han_given):
        return "typo"
    if (x.han_family and x.han_family == y.han_family) or x.family_py == y.family_py:
        return "family-only"
    return "disagree"


def compare_names(
    a: Iterable[NameForm], b: Iterable[NameForm]
) -> tuple[str, NameForm, NameForm] | None:
    """The best agreement level over all pairs of name forms, and the pair that gave it."""
    best: tuple[str, NameForm, NameForm] | None = None
    bs = tuple(b)
    for x in a:
        for y in bs:
            level = _compare_forms(x, y)
            if best is None or _NAME_ORDER.index(level) < _NAME_ORDER.index(best[0]):
                best = (level, x, y)
                if level == "exact":
                    return best
    return best


# ------------------------------------------------------------------------------- birth date


def compare_birth(a: str, b: str) -> str:
    """Agreement level of two birth dates written as digits (``YYYYMMDD`` or partial)."""
    if a == b:
        return "exact" if len(a) == 8 else "same-year"
    if len(a) == 8 and len(b) == 8:
        if a[:4] == b[:4] and a[4:6] == b[6:8] and a[6:8] == b[4:6]:
            return "transposed"
        if _hamming1(a, b) or _edit1(a, b):
            return "one-digit"
    return "same-year" if a[:4] == b[:4] else "disagree"


# ---------------------------------------------------------------------------------- address

_ADDRESS_ORDER = ("household", "district", "city", "disagree")


def _compare_address(x: AddressParts, y: AddressParts) -> str | None:
    if x.province and y.province and x.province != y.province:
        return "disagree"
    if x.city and y.city and x.city != y.city:
        return "disagree"
    district_conflict = bool(x.district and y.district and x.district != y.district)
    if x.line and x.line == y.line and not district_conflict:
        return "household"
    if x.district and x.district == y.district:
        return "district"
    if x.city and x.city == y.city:
        return "city"
    return None


def compare_addresses(a: Iterable[AddressParts], b: Iterable[AddressParts]) -> str | None:
    """The best agreement level over all pairs of addresses; ``None`` when nothing compares."""
    best: str | None = None
    bs = tuple(b)
    for x in a:
        for y in bs:
            level = _compare_address(x, y)
            if level and (best is None or _ADDRESS_ORDER.index(level) < _ADDRESS_ORDER.index(best)):
                best = level
    return best


def _phones_agree(a: frozenset[str], b: frozenset[str]) -> bool:
    if a & b:
        return True
    # a landline written with and without its area code
    return any((p.endswith(q) or q.endswith(p)) and min(len(p), len(q)) >= 7 for p in a for q in b)


# ----------------------------------------------------------------------------- resolution


def resolve(scores: Mapping[str, MatchScore]) -> dict[str, Grade]:
    """The grades of one registration against all its candidates, keyed by golden record.

    Pair grades stand, except that two or more ``probable`` candidates make the registration
    ambiguous: none of them is linked automatically, all go to review (``possible``). Two people
    of the same name and birth date, with no identifier or contact to tell them apart, are
    exactly this case. ``certain`` (an identifier rule) is never demoted.

    Key the mapping by golden record (the best score of each golden record's source records),
    so that several already linked records of one citizen do not count as ambiguity.
    """
    grades: dict[str, Grade] = {k: s.grade for k, s in scores.items()}
    if sum(g == "probable" for g in grades.values()) > 1:
        grades = {k: "possible" if g == "probable" else g for k, g in grades.items()}
    return grades


# ----------------------------------------------------------------------------------- score


def _rule(a: PatientFeatures, b: PatientFeatures) -> tuple[str, Grade] | None:
    shared_key = bool(a.keys & b.keys)
    if a.citizen_ids and b.citizen_ids:
        if a.citizen_ids & b.citizen_ids:
            return "citizen-id", "certain"
        if shared_key:
            return "conflict", "possible"
        return "citizen-id-differs", "certainly-not"
    if shared_key:
        return "identifier", "certain"
    return None


def score(
    a: PatientFeatures,
    b: PatientFeatures,
    config: MatchConfig = DEFAULT_CONFIG,
    frequencies: NameFrequency | None = None,
) -> MatchScore:
    """Compare two patients: deterministic rules, then the weighted evidence of every field."""
    fields: list[FieldScore] = []
    contact: list[FieldScore] = []
    name_level: str | None = None

    phone_agrees = False
    if a.phones and b.phones:
        phone_agrees = _phones_agree(a.phones, b.phones)
        level = "agree" if phone_agrees else "disagree"
        contact.append(FieldScore("phone", level, config.weight("phone", level)))
    address = compare_addresses(a.addresses, b.addresses)
    if address is not None:
        if address == "household" and phone_agrees:
            address = "household-with-phone"
        contact.append(FieldScore("address", address, config.weight("address", address)))
    household = phone_agrees or address in ("household", "household-with-phone")

    named = compare_names(a.names, b.names) if a.names and b.names else None
    if named is not None:
        name_level, x, y = named
        if name_level == "family-only" and household:
            name_level = "family-only-household"
        w = config.weight("name", name_level)
        if frequencies is not None and name_level in ("exact", "pinyin"):
            key = han_name_key(y) if name_level == "exact" else pinyin_name_key(y)
            freq = frequencies.name_frequency(key)
            if freq is not None:
                w = math.log2(config.m("name", name_level) / max(freq, config.name_u_floor))
        fields.append(FieldScore("name", name_level, w))

    if a.birth and b.birth:
        level = compare_birth(a.birth, b.birth)
        if level == "exact" and household:
            level = "exact-household"
        fields.append(FieldScore("birthDate", level, config.weight("birthDate", level)))

    if a.sex and b.sex:
        level = "agree" if a.sex == b.sex else "disagree"
        fields.append(FieldScore("gender", level, config.weight("gender", level)))
    fields.extend(contact)

    total = round(sum(f.weight for f in fields), 3)
    rule = _rule(a, b)
    if rule is not None:
        rule_name, grade = rule
        prob = 1.0 if grade == "certain" else 0.0 if grade == "certainly-not" else 0.5
        return MatchScore(total, grade, tuple(fields), rule_name, prob)
    if total >= config.upper and name_level in config.auto_link_name_levels:
        grade = "probable"
    elif total >= config.lower:
        grade = "possible"
    else:
        grade = "certainly-not"
    # logistic in bits, anchored at 0.99 on the upper threshold
    x_bits = total - config.upper + math.log2(99)
    prob = 1.0 / (1.0 + 2.0 ** (-x_bits)) if x_bits > -60 else 0.0
    return MatchScore(total, grade, tuple(fields), None, round(prob, 4))
