"""Enterprise master patient index (issue 9): the matching core, pure and database-free.

Patient/$match: http://hl7.org/fhir/R4/patient-operation-match.html

- :mod:`ehr.empi.features`: a Patient dict -> :class:`PatientFeatures` (names in characters and
  pinyin, birth date, sex, phones, address parts, identifiers by system).
- :mod:`ehr.empi.pinyin`: character variants, surname readings, toneless pinyin.
- :mod:`ehr.empi.scoring`: identifier rules, Fellegi–Sunter weights, grades, explanations.
- :mod:`ehr.empi.blocking`: blocking keys (future token-index rows) and an in-memory index.
- :mod:`ehr.empi.synth`: a seeded synthetic population with duplicates and hard negatives.

The FHIR operations ($match, link, merge, the review queue) are built on these, in
:mod:`ehr.empi.service` (the store-level API; it imports the database side, so this package's
root does not).
"""

from ehr.empi.blocking import BlockingIndex, blocking_keys
from ehr.empi.features import IdentityConfig, PatientFeatures, extract
from ehr.empi.scoring import (
    DEFAULT_CONFIG,
    FieldScore,
    Grade,
    MatchConfig,
    MatchScore,
    resolve,
    score,
)

__all__ = [
    "DEFAULT_CONFIG",
    "BlockingIndex",
    "FieldScore",
    "Grade",
    "IdentityConfig",
    "MatchConfig",
    "MatchScore",
    "PatientFeatures",
    "blocking_keys",
    "extract",
    "resolve",
    "score",
]
