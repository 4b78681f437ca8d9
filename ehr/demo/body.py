"""A per-person body model for the demo's vital signs and laboratory values: stable traits
(height, BMI, resting heart rate, blood-pressure offset) plus measurement noise, so a person's
numbers stay consistent from visit to visit. Children follow rough growth curves; adults'
values depend on age and on their chronic conditions.
"""

from __future__ import annotations

import random
from datetime import datetime

from ehr.demo.people import Person
from ehr.demo.vocab import CARDIOMETABOLIC


def _interp(table: tuple[tuple[float, float], ...], x: float) -> float:
    if x <= table[0][0]:
        return table[0][1]
    for (x0, y0), (x1, y1) in zip(table, table[1:], strict=False):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return table[-1][1]


_HEIGHT = {
    False: ((0, 50), (0.5, 68), (1, 76), (2, 88), (3, 96), (4, 104), (5, 111), (6, 117),
            (8, 129), (10, 139), (12, 151), (14, 163), (16, 170), (18, 172)),
    True: ((0, 49), (0.5, 66), (1, 75), (2, 87), (3, 95), (4, 103), (5, 110), (6, 116),
           (8, 128), (10, 140), (12, 152), (14, 158), (16, 160), (18, 160)),
}  # fmt: skip
_WEIGHT = {
    False: ((0, 3.3), (0.5, 8.0), (1, 10.0), (2, 12.5), (3, 14.5), (4, 16.5), (5, 18.5),
            (6, 21.0), (8, 26.0), (10, 33.0), (12, 42.0), (14, 52.0), (16, 60.0), (18, 64.0)),
    True: ((0, 3.2), (0.5, 7.5), (1, 9.4), (2, 12.0), (3, 14.0), (4, 16.0), (5, 18.0),
           (6, 20.0), (8, 25.0), (10, 32.0), (12, 40.0), (14, 47.0), (16, 51.0), (18, 52.0)),
}  # fmt: skip
_HEART = ((0, 135), (1, 120), (3, 105), (6, 95), (10, 85), (14, 78), (18, 74))


def _clip(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


class Body:
    """A person's physiology: stable traits plus per-measurement noise."""

    def __init__(self, rng: random.Random, p: Person, chronic: list[str]) -> None:
        self.rng = rng
        self.p = p
        self.chronic = chronic
        self.h_mult = _clip(rng.gauss(1, 0.035), 0.9, 1.1)
        self.w_mult = _clip(rng.gauss(1, 0.1), 0.75, 1.35)
        self.adult_h = _clip(rng.gauss(159, 5.5) if p.female else rng.gauss(171, 6), 145, 192)
        mean_bmi = 25.8 if any(c in chronic for c in CARDIOMETABOLIC) else 23.2
        self.bmi = _clip(rng.gauss(mean_bmi, 2.8), 17.5, 36)
        self.hr_off = rng.gauss(0, 6)
        self.sys_off = rng.gauss(0, 7)
        self.dia_off = rng.gauss(0, 5)

    def age(self, on: datetime) -> float:
        return (on.date() - self.p.birth).days / 365.25

    def height(self, on: datetime) -> float:
        a = self.age(on)
        if a < 18:
            return round(_interp(_HEIGHT[self.p.female], a) * self.h_mult, 1)
        return round(self.adult_h - max(0.0, a - 70) * 0.15, 1)

    def weight(self, on: datetime) -> float:
        a = self.age(on)
        if a < 18:
            base = _interp(_WEIGHT[self.p.female], a) * self.w_mult
        else:
            base = self.bmi * (self.height(on) / 100) ** 2
        return round(base * _clip(self.rng.gauss(1, 0.015), 0.95, 1.05), 1)

    def temperature(self, fever: bool) -> float:
        t = self.rng.gauss(38.4, 0.5) if fever else self.rng.gauss(36.6, 0.2)
        return round(_clip(t, 37.4 if fever else 36.0, 40.2 if fever else 37.2), 1)

    def heart_rate(self, on: datetime, temp: float | None) -> int:
        base = _interp(_HEART, self.age(on)) + self.hr_off
        if temp is not None and temp > 37:
            base += (temp - 37) * 10
        return round(_clip(base + self.rng.gauss(0, 4), 50, 180))

    def blood_pressure(self, on: datetime) -> tuple[int, int]:
        a = self.age(on)
        rng = self.rng
        if a < 18:
            sys_, dia = 90 + 1.5 * a + self.sys_off * 0.6, 55 + a + self.dia_off * 0.6
        elif "I10" in self.chronic:
            sys_, dia = 142 + self.sys_off, 88 + self.dia_off
        else:
            sys_ = 110 + 0.45 * max(0.0, a - 25) + self.sys_off
            dia = 71 + 0.15 * max(0.0, a - 25) + self.dia_off
        sys_, dia = sys_ + rng.gauss(0, 5), dia + rng.gauss(0, 3)
        return round(_clip(sys_, 80, 200)), round(_clip(dia, 45, min(120, sys_ - 20)))

    def spo2(self, hypoxia: bool) -> int:
        if hypoxia:
            return round(_clip(self.rng.gauss(92, 2), 85, 95))
        return self.rng.randint(96, 99)

    def lab(self, key: str) -> float:
        rng = self.rng
        if key == "glu":
            v = rng.gauss(7.8, 1.4) if "E11.9" in self.chronic else rng.gauss(5.0, 0.4)
            return round(_clip(v, 3.9, 15.0), 1)
        if key == "a1c":
            v = rng.gauss(7.3, 0.8) if "E11.9" in self.chronic else rng.gauss(5.4, 0.3)
            return round(_clip(v, 4.2, 11.0), 1)
        hyper = "E78.5" in self.chronic or "I25.1" in self.chronic
        return round(_clip(rng.gauss(6.1, 0.6) if hyper else rng.gauss(4.6, 0.5), 2.9, 8.5), 2)
