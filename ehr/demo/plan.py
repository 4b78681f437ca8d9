"""The visit plan of one demo citizen over the three years before the anchor date.

Chronic diseases by age (hypertension, type 2 diabetes, hyperlipidaemia, coronary heart
disease, asthma, myopia, chronic gastritis) bring follow-ups at the community health centre and
the odd specialist visit; acute episodes by age (colds, sore throats, gastroenteritis, caries,
fractures, appendicitis, pneumonia ...) bring outpatient, emergency or inpatient encounters;
there is antenatal care, child health checks, and a yearly check for the over-65s. A plan is a
list of :class:`Visit` s; :mod:`ehr.demo.records` turns them into resources.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from ehr.demo.city import COMMUNITY_OF_DISTRICT, FACILITY_BY_KEY, Facility
from ehr.demo.elements import CST
from ehr.demo.people import Person
from ehr.demo.vocab import CARDIOMETABOLIC

FEVERISH = ("J06.9", "J02.9", "K52.9", "J18.9")


@dataclass
class Visit:
    start: datetime
    end: datetime
    fac: Facility
    dept: str
    cls: str
    reasons: list[str]
    new_conditions: list[str] = field(default_factory=list)
    vitals: list[str] = field(default_factory=list)
    labs: list[str] = field(default_factory=list)
    meds: list[tuple[str, str]] = field(default_factory=list)  # (drug, reason ICD-10)
    chronic_meds: bool = False  # gets the person's maintenance medicines
    fever: bool = False
    hypoxia: bool = False
    order: int = 0
    eid: str = ""


def random_day(rng: random.Random, lo: date, hi: date) -> date:
    return lo + timedelta(days=rng.randint(0, max(0, (hi - lo).days)))


def _clinic_start(rng: random.Random, d: date) -> datetime:
    hour = rng.randint(8, 11) if d.weekday() == 5 else rng.choice([8, 9, 10, 11, 14, 15, 16])
    return datetime.combine(d, time(hour, rng.randrange(0, 60, 5)), CST)


def choose_chronic(rng: random.Random, age: int) -> list[str]:
    out: list[str] = []
    if age >= 18 and rng.random() < (
        0.02 if age < 35 else 0.18 if age < 50 else 0.32 if age < 65 else 0.5
    ):
        out.append("I10")
    if age >= 30 and rng.random() < (0.03 if age < 45 else 0.1 if age < 60 else 0.18):
        out.append("E11.9")
    if age >= 35 and rng.random() < (0.25 if out else 0.1):
        out.append("E78.5")
    if age >= 55 and rng.random() < (0.15 if "I10" in out else 0.06):
        out.append("I25.1")
    if 4 <= age <= 60 and rng.random() < 0.05:
        out.append("J45.9")
    if 7 <= age <= 17 and rng.random() < 0.4:
        out.append("H52.1")
    if age >= 25 and rng.random() < 0.06:
        out.append("K29.5")
    return out


def maintenance_drugs(rng: random.Random, chronic: list[str], age: int) -> dict[str, list[str]]:
    """Chronic condition -> maintenance medicines."""
    meds: dict[str, list[str]] = {}
    if "I10" in chronic:
        meds["I10"] = ["amlodipine" if rng.random() < 0.6 else "valsartan"]
    if "E11.9" in chronic:
        meds["E11.9"] = ["metformin"]
    if "E78.5" in chronic:
        meds["E78.5"] = ["atorvastatin"]
    if "I25.1" in chronic:
        meds["I25.1"] = ["aspirin"] + ([] if "E78.5" in chronic else ["atorvastatin"])
    if "J45.9" in chronic:
        meds["J45.9"] = ["montelukast" if age < 12 else "budesonide-formoterol"]
    if "H52.1" in chronic and rng.random() < 0.5:
        meds["H52.1"] = ["atropine-eye"]
    return meds


# acute episode -> weights for (child < 14, adult < 65, older), minimum and maximum age
_EPISODES: dict[str, tuple[tuple[int, int, int], int, int]] = {
    "J06.9": ((30, 25, 15), 0, 120),
    "J02.9": ((10, 10, 5), 3, 120),
    "K52.9": ((12, 8, 6), 0, 120),
    "K02.9": ((8, 6, 3), 4, 75),
    "H10.9": ((4, 3, 2), 0, 120),
    "M54.5": ((0, 10, 10), 25, 120),
    "S52.5": ((3, 2, 5), 5, 120),
    "K35.8": ((1, 1, 0), 6, 60),
    "J18.9": ((3, 0, 5), 0, 120),
}


class Planner:
    def __init__(self, rng: random.Random, p: Person, anchor: date, allergies: list[str]) -> None:
        self.rng = rng
        self.p = p
        self.anchor = anchor
        self.allergies = allergies
        self.last = anchor - timedelta(days=1)
        self.first = max(p.birth, anchor - timedelta(days=3 * 365))
        self.visits: list[Visit] = []
        self.community = COMMUNITY_OF_DISTRICT[p.district]

    def age_on(self, d: date) -> int:
        return self.p.age_on(d)

    def add(self, v: Visit) -> Visit:
        v.order = len(self.visits)
        self.visits.append(v)
        return v

    def outpatient(self, d: date, f: Facility, dept: str, reasons: list[str], **kw: Any) -> Visit:
        if d.weekday() == 6:  # clinics close on Sunday: the Monday after, else the Saturday before
            if d < self.last:
                d += timedelta(days=1)
            elif d > self.first:
                d -= timedelta(days=1)
        start = _clinic_start(self.rng, d)
        end = start + timedelta(minutes=self.rng.randint(10, 40))
        return self.add(Visit(start, end, f, dept, "AMB", reasons, **kw))

    def vitals_for(self, d: date, *extra: str) -> list[str]:
        age = self.age_on(d)
        base = ["hr"] if age < 3 else ["bp", "hr"]
        return base + [e for e in extra if e not in base]

    # --- chronic care
    def chronic_care(self, chronic: list[str]) -> None:
        rng, p = self.rng, self.p
        cardio = [c for c in chronic if c in CARDIOMETABOLIC]
        if cardio:
            lo = max(self.first, self.anchor - timedelta(days=540))
            n = rng.randint(2, 4)
            span = (self.last - lo).days
            for i in range(n):
                d = lo + timedelta(days=span * i // n + rng.randint(0, max(0, span // n - 1)))
                labs = ["glu"] if "E11.9" in chronic else []
                if "E11.9" in chronic and i % 2 == 0:
                    labs.append("a1c")
                if ("E78.5" in chronic or "I25.1" in chronic) and i == n - 1:
                    labs.append("chol")
                self.outpatient(
                    d,
                    self.community,
                    "02",
                    list(cardio),
                    vitals=self.vitals_for(d, "wt"),
                    labs=labs,
                    chronic_meds=True,
                )
        h1, h4 = FACILITY_BY_KEY["h1"], FACILITY_BY_KEY["h4"]
        if "E11.9" in chronic:
            d = random_day(rng, self.first, self.last)
            self.outpatient(
                d,
                h1,
                "03.07",
                ["E11.9"],
                vitals=self.vitals_for(d, "wt", "ht", "bmi"),
                labs=["glu", "a1c"],
            )
        if "I25.1" in chronic:
            d = random_day(rng, self.first, self.last)
            self.outpatient(d, h1, "03.04", ["I25.1"], vitals=self.vitals_for(d))
        if "J45.9" in chronic:
            for _ in range(rng.randint(1, 2)):
                d = random_day(rng, self.first, self.last)
                child = self.age_on(d) < 14
                self.outpatient(
                    d,
                    h4 if child else h1,
                    "07" if child else "03",
                    ["J45.9"],
                    vitals=self.vitals_for(d, "spo2"),
                    chronic_meds=True,
                )
        if "H52.1" in chronic:
            lo = min(self.last, max(self.first, p.birth + timedelta(days=7 * 365)))
            for _ in range(rng.randint(1, 2)):
                self.outpatient(
                    random_day(rng, lo, self.last), h1, "10", ["H52.1"], chronic_meds=True
                )
        if "K29.5" in chronic:
            d = random_day(rng, self.first, self.last)
            f = h1 if rng.random() < 0.6 else FACILITY_BY_KEY["h2"]
            self.outpatient(
                d,
                f,
                "03" if f is h1 else "50",
                ["K29.5"],
                vitals=self.vitals_for(d),
                meds=[("omeprazole", "K29.5")],
            )

    # --- acute episodes
    def acute(self) -> None:
        rng, p = self.rng, self.p
        age = self.age_on(self.anchor)
        n = rng.randint(1, 3) if age < 3 else rng.randint(0, 2)
        lo = max(self.first, p.birth + timedelta(days=30))
        if lo >= self.last:
            return
        for _ in range(n):
            d = random_day(rng, lo, self.last)
            a = self.age_on(d)
            band = 0 if a < 14 else 1 if a < 65 else 2
            codes = [c for c, (w, mn, mx) in _EPISODES.items() if mn <= a <= mx and w[band]]
            code = rng.choices(codes, weights=[_EPISODES[c][0][band] for c in codes])[0]
            self.episode(code, d, a)

    def episode(self, code: str, d: date, age: int) -> None:
        rng = self.rng
        child = age < 14
        h1, h2, h4 = FACILITY_BY_KEY["h1"], FACILITY_BY_KEY["h2"], FACILITY_BY_KEY["h4"]
        fever = code in FEVERISH and rng.random() < 0.8
        meds: list[tuple[str, str]] = []
        vitals = self.vitals_for(d, "temp")
        if code == "J06.9":
            f, dept = (h4, "07") if child else (h1, "03")
            if rng.random() < (0.1 if child else 0.4):
                f, dept = h2, "50"
            if f is h2:
                meds.append(("lianhua", code))
            elif child and fever:
                meds.append(("paracetamol", code))
            self.outpatient(
                d, f, dept, [code], new_conditions=[code], vitals=vitals, meds=meds, fever=fever
            )
        elif code == "J02.9":
            f, dept = (h4, "07") if child else (h1, "11")
            if "penicillin" not in self.allergies:
                meds.append(("amoxicillin", code))
            self.outpatient(
                d, f, dept, [code], new_conditions=[code], vitals=vitals, meds=meds, fever=fever
            )
        elif code == "K52.9":
            if child:
                meds.append(("ors", code))
            f = h4 if child else h1
            if rng.random() < 0.4:
                self.emergency(d, f, code, vitals, meds, fever)
            else:
                self.outpatient(
                    d,
                    f,
                    "07" if child else "03",
                    [code],
                    new_conditions=[code],
                    vitals=vitals,
                    meds=meds,
                    fever=fever,
                )
        elif code == "K02.9":
            self.outpatient(d, h1, "12", [code], new_conditions=[code])
        elif code == "H10.9":
            self.outpatient(d, h1, "10", [code], new_conditions=[code])
        elif code == "M54.5":
            f, dept = rng.choice([(h1, "04.03"), (h2, "50.13"), (h2, "50.10")])
            self.outpatient(
                d,
                f,
                dept,
                [code],
                new_conditions=[code],
                vitals=self.vitals_for(d),
                meds=[("ibuprofen", code)],
            )
        elif code == "S52.5":
            self.emergency(
                d, h4 if child else h1, code, self.vitals_for(d), [("ibuprofen", code)], False
            )
        elif code in ("K35.8", "J18.9"):
            if code == "K35.8":
                f, dept = (h4, "08") if child else (h1, "04")
            else:
                f, dept = (h4, "07") if child else (h1, "03")
            if "cephalosporin" not in self.allergies:
                meds.append(("cefuroxime", code))
            self.inpatient(
                d,
                f,
                dept,
                code,
                self.vitals_for(d, "temp", "spo2", "wt"),
                meds,
                fever=code == "J18.9" or rng.random() < 0.5,
                hypoxia=code == "J18.9" and rng.random() < 0.6,
            )

    def emergency(
        self,
        d: date,
        f: Facility,
        code: str,
        vitals: list[str],
        meds: list[tuple[str, str]],
        fever: bool,
    ) -> None:
        rng = self.rng
        start = datetime.combine(d, time(rng.randint(0, 23), rng.randrange(0, 60, 5)), CST)
        end = start + timedelta(minutes=rng.randint(60, 300))
        last_moment = datetime.combine(self.last, time(23, 59), CST)
        if end > last_moment:
            start, end = start - (end - last_moment), last_moment
        self.add(Visit(start, end, f, "20", "EMER", [code], [code], vitals, [], meds, fever=fever))

    def inpatient(
        self,
        d: date,
        f: Facility,
        dept: str,
        code: str,
        vitals: list[str],
        meds: list[tuple[str, str]],
        fever: bool,
        hypoxia: bool,
    ) -> None:
        rng = self.rng
        stay = rng.randint(4, 9)
        d = min(d, self.last - timedelta(days=stay))
        if d < self.first:
            return
        start = datetime.combine(d, time(rng.randint(8, 20), rng.randrange(0, 60, 5)), CST)
        end = datetime.combine(d + timedelta(days=stay), time(10, rng.randrange(0, 60, 5)), CST)
        self.add(
            Visit(
                start,
                end,
                f,
                dept,
                "IMP",
                [code],
                [code],
                vitals,
                [],
                meds,
                fever=fever,
                hypoxia=hypoxia,
            )
        )

    # --- prevention
    def pregnancy(self) -> None:
        rng, h3 = self.rng, FACILITY_BY_KEY["h3"]
        first = self.last - timedelta(days=rng.randint(120, 200))
        for i in range(3):
            d = first + timedelta(days=i * 56 + rng.randint(0, 10))
            if d > self.last:
                break
            self.outpatient(
                d,
                h3,
                "05.02",
                ["Z34.9"],
                new_conditions=["Z34.9"] if i == 0 else [],
                vitals=self.vitals_for(d, "wt"),
                meds=[("folic-acid", "Z34.9")] if i == 0 else [],
            )

    def child_checks(self) -> None:
        p = self.p
        for months in (1, 3, 6, 8, 12, 18, 24, 30, 36, 48, 60, 72):
            d = p.birth + timedelta(days=int(months * 30.44) + self.rng.randint(0, 6))
            if self.first <= d <= self.last:
                f = FACILITY_BY_KEY["h3" if months <= 12 else "h4"]
                self.outpatient(d, f, "09", ["Z00.1"], vitals=["wt", "ht", "hr"])

    def health_checks(self) -> None:
        age = self.age_on(self.anchor)
        years = range(self.anchor.year - 2, self.anchor.year + 1) if age >= 65 else ()
        for y in years:
            d = date(y, self.rng.randint(3, 6), self.rng.randint(1, 28))
            if self.first <= d <= self.last and self.age_on(d) >= 65:
                self.outpatient(
                    d,
                    self.community,
                    "02",
                    ["Z00.0"],
                    vitals=self.vitals_for(d, "wt", "ht", "bmi"),
                    labs=["glu", "chol"],
                )
        if not self.visits:
            d = random_day(self.rng, self.first, self.last)
            if self.age_on(d) < 14:
                self.outpatient(
                    d, FACILITY_BY_KEY["h4"], "09", ["Z00.1"], vitals=["wt", "ht", "hr"]
                )
            else:
                self.outpatient(
                    d,
                    self.community,
                    "02",
                    ["Z00.0"],
                    vitals=self.vitals_for(d, "wt", "ht", "bmi"),
                    labs=["glu", "chol"],
                )
