"""Blocking: pick the few records a new registration is worth scoring against.

Patient/$match: http://hl7.org/fhir/R4/patient-operation-match.html (the server "may use any
algorithm"; this is ours). Standard record-linkage blocking (Christen, *Data Matching*, 2012, ch. 4):
a registration is compared only with records that share at least one blocking key.

**Keys** (:func:`blocking_keys`), plain ``kind:value`` strings, each built so that one kind of
error in a duplicate leaves at least one other key intact:

======================  =============================================  =======================
kind                    value                                          survives
======================  =============================================  =======================
``cid:``                hashed citizen ID                              everything but its loss
``id:``                 ``system|value`` of a card, insurance, MRN     everything but its loss
``tel:``                last 8 digits of a phone                       name, date, address
``nm:``                 family and given pinyin, sorted (order-free)   homophones, pinyin-only,
                                                                       swapped names, bad date
``dob:``                birth date + one pinyin initial (family or     typos, new phone/address
                        given, one key each)
======================  =============================================  =======================

Identifier keys (``cid:``, ``id:``) are never skipped. A non-identifier block bigger than
``max_block`` is skipped (a name like 王伟 in a large region says little, and the other keys
still find the record).

**Name counts.** The index also counts ``han:`` (characters) and ``py:`` (ordered pinyin) name
keys, the :class:`~ehr.empi.scoring.NameFrequency` that scoring uses to weigh common names less.

**In the database** the keys become token-index rows, one per (key, Patient) with the key in the
code column (the kind prefix keeps kinds apart, so one ``(code)`` B-tree serves all):

- candidates: ``SELECT DISTINCT resource_pk FROM <rows> WHERE code IN (:keys)``, after dropping
  the keys whose ``count(*)`` exceeds ``max_block`` (or read from a small counts table kept
  with the rows);
- name frequency: ``count(*)`` of the ``han:``/``py:`` row over the number of Patients;
- the rows are written in the same transaction as the Patient, like every other index row.

Keys are at most a few dozen characters (the citizen-ID hash is 64 hex digits; an identifier
key carries its system URI), well under the token column's width.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ehr.empi.features import PatientFeatures
from ehr.empi.scoring import han_name_key, pinyin_name_key

__all__ = ["BlockingIndex", "blocking_keys", "name_count_keys", "IDENTIFIER_KINDS"]

#: kinds whose blocks are never skipped, however large
IDENTIFIER_KINDS = ("cid:", "id:")
_MAX_FAMILY_ALTS = 3


def blocking_keys(f: PatientFeatures) -> frozenset[str]:
    """The blocking keys of one patient (see the module docstring for the kinds)."""
    keys: set[str] = {f"cid:{h}" for h in f.citizen_ids}
    keys.update(f"id:{system}|{value}" for system, value in f.keys)
    keys.update(f"tel:{p[-8:]}" for p in f.phones)
    full_date = f.birth if f.birth and len(f.birth) == 8 else None
    for n in f.names:
        given = n.given_py
        families = sorted(n.family_alts)[:_MAX_FAMILY_ALTS] if n.family_alts else [n.family_py]
        if n.family_py not in families:
            families.append(n.family_py)
        for fam in families:
            if fam or given:
                first, second = sorted((fam, given))
                keys.add(f"nm:{first}|{second}")
            if full_date:
                keys.update(f"dob:{full_date}|{s[:1]}" for s in (fam, given) if s)
    return frozenset(keys)


def name_count_keys(f: PatientFeatures) -> frozenset[str]:
    """The ``han:``/``py:`` keys this patient adds to the name counts."""
    out = {pinyin_name_key(n) for n in f.names}
    out.update(han_name_key(n) for n in f.names if n.is_han)
    return frozenset(out)


class BlockingIndex:
    """In-memory blocking index (what the database rows do, for the benchmark and tests)."""

    def __init__(self, max_block: int = 500) -> None:
        self.max_block = max_block
        self._blocks: defaultdict[str, set[str]] = defaultdict(set)
        self._keys_of: dict[str, frozenset[str]] = {}
        self._names_of: dict[str, frozenset[str]] = {}
        self._name_counts: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._keys_of)

    def __contains__(self, rid: object) -> bool:
        return rid in self._keys_of

    def add(self, rid: str, features: PatientFeatures) -> None:
        """Index (or re-index) record ``rid``."""
        if rid in self._keys_of:
            self.remove(rid)
        keys = blocking_keys(features)
        for k in keys:
            self._blocks[k].add(rid)
        self._keys_of[rid] = keys
        names = name_count_keys(features)
        self._name_counts.update(names)
        self._names_of[rid] = names

    def remove(self, rid: str) -> None:
        for k in self._keys_of.pop(rid, frozenset()):
            block = self._blocks[k]
            block.discard(rid)
            if not block:
                del self._blocks[k]
        self._name_counts.subtract(self._names_of.pop(rid, frozenset()))

    def block_size(self, key: str) -> int:
        block = self._blocks.get(key)
        return len(block) if block else 0

    def candidates(self, features: PatientFeatures) -> set[str]:
        """Records sharing a usable blocking key with ``features``."""
        found: set[str] = set()
        for k in blocking_keys(features):
            block = self._blocks.get(k)
            if not block:
                continue
            if len(block) > self.max_block and not k.startswith(IDENTIFIER_KINDS):
                continue
            found |= block
        return found

    def name_frequency(self, key: str) -> float | None:
        """Share of the indexed records carrying name key ``key`` (at least one record)."""
        n = len(self._keys_of)
        if not n:
            return None
        return max(self._name_counts.get(key, 0), 1) / n
