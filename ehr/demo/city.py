"""The fictional city of 云泽市 (Yunze), 江苏省: districts, streets, hospitals, community health
centres, their departments and places, as FHIR Organization, Location and HealthcareService
(http://hl7.org/fhir/R4/organization.html, location.html, healthcareservice.html).

The city and its region codes (``3299xx``) are invented: GB/T 2260 allocates no prefecture
``3299`` in Jiangsu, so a demo citizen ID can never be a real person's number.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from ehr.codesystems import DEPARTMENTS, department_coding
from ehr.demo.elements import SNOMED, coding, concept, meta, ref
from ehr.demo.vocab import HOSPITAL_GRADE_SYSTEM, HOSPITAL_GRADES, ORG_KIND_SYSTEM, ORG_KINDS
from ehr.identifiers import ORGANIZATION_CODE_SYSTEM, org_code_check_digit

PROVINCE = "江苏省"
CITY = "云泽市"
CITY_REGION = "329900"

V3_ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
SERVICE_CATEGORY = "http://terminology.hl7.org/CodeSystem/service-category"
SERVICE_TYPE = "http://terminology.hl7.org/CodeSystem/service-type"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True)
class Street:
    code: str  # 3 digits (GB/T 10114: 001-099 街道, 100-199 镇)
    name: str
    roads: tuple[str, ...]  # roads, or villages in a town
    rural: bool = False


@dataclass(frozen=True)
class District:
    code: str  # 6-digit region code
    name: str
    postal: str
    weight: float  # share of the population
    streets: tuple[Street, ...]


DISTRICTS: tuple[District, ...] = (
    District("329902", "青山区", "219100", 0.28, (
        Street("001", "人民路街道", ("人民路", "解放路", "中山路")),
        Street("002", "滨江街道", ("滨江路", "长江路")),
        Street("003", "青山湖街道", ("湖光路", "青山路")),
    )),
    District("329903", "东湖区", "219200", 0.24, (
        Street("001", "东湖街道", ("东湖路", "和平路")),
        Street("002", "新华街道", ("新华路", "建设路")),
        Street("003", "湖滨街道", ("湖滨路", "花园路")),
    )),
    District("329904", "西津区", "219300", 0.18, (
        Street("001", "西津街道", ("西津路", "文化路")),
        Street("002", "古渡街道", ("古渡路", "运河路")),
    )),
    District("329905", "南塘区", "219400", 0.18, (
        Street("001", "南塘街道", ("南塘路", "青年路")),
        Street("002", "高新街道", ("科技大道", "学府路")),
    )),
    District("329921", "云溪县", "219500", 0.12, (
        Street("101", "云溪镇", ("桃花村", "石桥村"), rural=True),
        Street("102", "桃源镇", ("桃源村", "柳湾村"), rural=True),
    )),
)  # fmt: skip
DISTRICT_BY_CODE = {d.code: d for d in DISTRICTS}

# department code -> (SNOMED specialty, display) from the c80-practice-codes value set
SPECIALTY: dict[str, tuple[str, str]] = {
    "01": ("409968004", "Preventive medicine"),
    "02": ("394814009", "General practice"),
    "03": ("419192003", "Internal medicine"),
    "03.04": ("394579002", "Cardiology"),
    "03.07": ("394583002", "Endocrinology"),
    "04": ("394609007", "Surgery-general"),
    "04.03": ("394801008", "Surgery-Trauma and orthopedics"),
    "05": ("394585009", "Obstetrics and gynecology"),
    "05.01": ("394586005", "Gynecology"),
    "05.02": ("408470005", "Obstetrics"),
    "06": ("394585009", "Obstetrics and gynecology"),
    "07": ("394537008", "Pediatric specialty"),
    "08": ("394539006", "Pediatric surgery"),
    "09": ("394537008", "Pediatric specialty"),
    "10": ("394594003", "Ophthalmology"),
    "11": ("418960008", "Otolaryngology"),
    "12": ("394812008", "Dental medicine specialties"),
    "20": ("773568002", "Emergency medicine"),
}
# department code -> (service-type code, display)
SERVICE_TYPES: dict[str, tuple[str, str]] = {
    "01": ("57", "Immunization"),
    "02": ("124", "General Practice"),
    "03.04": ("165", "Cardiology"),
    "03.07": ("169", "Endocrinology"),
    "04": ("221", "Surgery - General"),
    "04.03": ("218", "Orthopaedic Surgery"),
    "05": ("186", "Obstetrics & Gynaecology"),
    "05.01": ("481", "Gynaecology"),
    "05.02": ("482", "Obstetrics"),
    "06": ("559", "Women's Health"),
    "07": ("200", "Paediatric Medicine"),
    "08": ("207", "Paediatric Surgery"),
    "09": ("58", "Maternal & Child Health"),
    "10": ("217", "Ophthalmology"),
    "11": ("219", "Otolaryngology/Head & Neck Surgery"),
    "12": ("88", "General Dental"),
    "20": ("117", "Emergency Medical"),
    "50": ("18", "Chinese Herbal Medicine"),
    "50.13": ("13", "Acupuncture"),
}
# department code -> v3-RoleCode location type
LOCATION_TYPE: dict[str, tuple[str, str]] = {
    "01": ("PC", "Primary care clinic"),
    "02": ("PC", "Primary care clinic"),
    "03": ("GIM", "General internal medicine clinic"),
    "03.07": ("ENDO", "Endocrinology clinic"),
    "04": ("SU", "Surgery clinic"),
    "04.03": ("ORTHO", "Orthopedics clinic"),
    "05": ("GYN", "Gynecology clinic"),
    "05.01": ("GYN", "Gynecology clinic"),
    "05.02": ("OB", "Obstetrics clinic"),
    "07": ("PEDC", "Pediatrics clinic"),
    "09": ("PEDC", "Pediatrics clinic"),
    "10": ("OPH", "Opthalmology clinic"),
    "11": ("ENT", "Otorhinolaryngology clinic"),
    "20": ("ER", "Emergency room"),
}
# department code -> service-category
CATEGORY: dict[str, tuple[str, str]] = {
    "01": ("7", "Community Health Care"),
    "02": ("17", "General Practice"),
    "12": ("10", "Dental"),
    "20": ("14", "Emergency Department"),
    "04": ("31", "Specialist Surgical"),
    "04.03": ("31", "Specialist Surgical"),
    "08": ("29", "Specialist Paediatric"),
    "07": ("29", "Specialist Paediatric"),
    "09": ("29", "Specialist Paediatric"),
    "05": ("28", "Specialist Obstetrics & Gynecology"),
    "05.01": ("28", "Specialist Obstetrics & Gynecology"),
    "05.02": ("28", "Specialist Obstetrics & Gynecology"),
    "06": ("28", "Specialist Obstetrics & Gynecology"),
}


_SIGN_NAMES = {
    "03.04": "心血管内科",
    "03.07": "内分泌科",
    "04.03": "骨科",
    "05.01": "妇科",
    "05.02": "产科",
    "20": "急诊科",
    "50": "中医内科",
    "50.10": "骨伤科",
    "50.13": "针灸科",
}


@dataclass(frozen=True)
class Facility:
    key: str  # h1 .. h4, c1 .. c5
    name: str
    alias: str
    kind: str  # ORG_KINDS key
    grade: str | None  # HOSPITAL_GRADES key
    district: str  # region code
    street: int  # index into the district's streets
    address: str  # road and number
    lat: float
    lon: float
    departments: tuple[str, ...]
    wards: tuple[tuple[str, str], ...] = ()  # (department code, ward name)
    doctors: dict[str, int] = field(default_factory=dict)  # department -> doctors (default 1)
    nurses: int = 1

    @property
    def org_id(self) -> str:
        return f"org-{self.key}"

    @property
    def site_id(self) -> str:
        return f"loc-{self.key}"

    @property
    def is_hospital(self) -> bool:
        return self.key.startswith("h")

    def service_id(self, dept: str) -> str:
        return f"hs-{self.key}-{dept.replace('.', '')}"

    def clinic_id(self, dept: str) -> str:
        if dept == "20":
            return f"loc-{self.key}-er"
        return f"loc-{self.key}-c{dept.replace('.', '')}"

    def ward_id(self, dept: str) -> str | None:
        for d, _ in self.wards:
            if d == dept:
                return f"loc-{self.key}-w{d.replace('.', '')}"
        return None

    def dept_name(self, dept: str) -> str:
        """The name a patient sees on the sign: 内分泌科 rather than the catalogue's 内分泌专业."""
        return _SIGN_NAMES.get(dept, DEPARTMENTS[dept])


FACILITIES: tuple[Facility, ...] = (
    Facility("h1", "云泽市第一人民医院", "市一院", "general-hospital", "3A", "329902", 0,
             "人民路88号", 32.0712, 119.7523,
             ("03", "03.04", "03.07", "04", "04.03", "05", "07", "10", "11", "12", "20"),
             (("03", "内科病区"), ("04", "外科病区"), ("04.03", "骨科病区"),
              ("05", "妇产科病区"), ("07", "儿科病区")),
             {"03": 2}, nurses=2),
    Facility("h2", "云泽市中医院", "市中医院", "tcm-hospital", "3A", "329903", 1,
             "建设路166号", 32.0825, 119.7891, ("50", "50.13", "50.10", "20"),
             (("50", "中医内科病区"),), {"50": 2}),
    Facility("h3", "云泽市妇幼保健院", "市妇幼", "maternal-child-health", "3A", "329904", 0,
             "文化路25号", 32.0533, 119.7218, ("05.01", "05.02", "06", "09"),
             (("05.02", "产科病区"),)),
    Facility("h4", "云泽市儿童医院", "市儿童医院", "childrens-hospital", "3A", "329905", 0,
             "青年路200号", 32.0389, 119.7702, ("07", "08", "09", "20"),
             (("07", "儿内科病区"), ("08", "小儿外科病区")), {"07": 2}),
    Facility("c1", "青山区人民路社区卫生服务中心", "人民路社区", "community-health-centre", None,
             "329902", 0, "解放路12号", 32.0755, 119.7488, ("02", "01"), (), {"02": 2, "01": 0}),
    Facility("c2", "东湖区东湖街道社区卫生服务中心", "东湖社区", "community-health-centre", None,
             "329903", 0, "和平路58号", 32.0902, 119.7955, ("02", "01"), (), {"02": 2, "01": 0}),
    Facility("c3", "西津区古渡街道社区卫生服务中心", "古渡社区", "community-health-centre", None,
             "329904", 1, "运河路31号", 32.0478, 119.7123, ("02", "01"), (), {"02": 2, "01": 0}),
    Facility("c4", "南塘区高新街道社区卫生服务中心", "高新社区", "community-health-centre", None,
             "329905", 1, "学府路9号", 32.0301, 119.7809, ("02", "01"), (), {"02": 2, "01": 0}),
    Facility("c5", "云溪县云溪镇卫生院", "云溪镇卫生院", "township-health-centre", None,
             "329921", 0, "云溪大街1号", 31.9822, 119.8540, ("02", "01"), (), {"02": 2, "01": 0}),
)  # fmt: skip
FACILITY_BY_KEY = {f.key: f for f in FACILITIES}
#: the community health centre that keeps the health records of each district
COMMUNITY_OF_DISTRICT = {f.district: f for f in FACILITIES if not f.is_hospital}


def address(district_code: str, street: int, line: str, use: str) -> dict[str, Any]:
    """A Chinese address: ``line`` = [街道/镇, road and number]; ``district`` = 区/县."""
    d = DISTRICT_BY_CODE[district_code]
    s = d.streets[street]
    return {
        "use": use,
        "type": "both",
        "text": f"{PROVINCE}{CITY}{d.name}{s.name}{line}",
        "line": [s.name, line],
        "city": CITY,
        "district": d.name,
        "state": PROVINCE,
        "postalCode": d.postal,
        "country": "CN",
    }


def _org_code(key: str) -> str:
    """A GB 11714 organisation code with a valid check character, derived from the key."""
    body = f"{zlib.crc32(key.encode()) % 10**8:08d}"
    return f"{body}-{org_code_check_digit(body)}"


def _hours(days: list[str], start: str | None = None, end: str | None = None) -> dict[str, Any]:
    if start is None:
        return {"daysOfWeek": days, "allDay": True}
    return {"daysOfWeek": days, "openingTime": start, "closingTime": end}


def organization(f: Facility) -> dict[str, Any]:
    types = [
        concept(coding(ORG_TYPE, "prov", "Healthcare Provider")),
        concept(coding(ORG_KIND_SYSTEM, f.kind, ORG_KINDS[f.kind]), text=ORG_KINDS[f.kind]),
    ]
    if f.grade:
        g = HOSPITAL_GRADES[f.grade]
        types.append(concept(coding(HOSPITAL_GRADE_SYSTEM, f.grade, g), text=g))
    return {
        "resourceType": "Organization",
        "id": f.org_id,
        "meta": meta(),
        "identifier": [
            {"use": "official", "system": ORGANIZATION_CODE_SYSTEM, "value": _org_code(f.key)}
        ],
        "active": True,
        "type": types,
        "name": f.name,
        "alias": [f.alias],
        "address": [address(f.district, f.street, f.address, "work")],
    }


def _location(
    lid: str,
    name: str,
    f: Facility,
    physical: tuple[str, str],
    loc_type: tuple[str, str] | None,
    part_of: str | None,
    hours: list[dict[str, Any]] | None,
    with_address: bool = False,
) -> dict[str, Any]:
    loc: dict[str, Any] = {
        "resourceType": "Location",
        "id": lid,
        "meta": meta(),
        "status": "active",
        "name": name,
        "mode": "instance",
    }
    if loc_type:
        loc["type"] = [concept(coding(V3_ROLE, *loc_type))]
    if with_address:
        loc["address"] = address(f.district, f.street, f.address, "work")
    loc["physicalType"] = concept(coding(PHYSICAL_TYPE, *physical))
    if with_address:
        loc["position"] = {"longitude": f.lon, "latitude": f.lat}
    loc["managingOrganization"] = ref("Organization", f.org_id, f.name)
    if part_of:
        loc["partOf"] = ref("Location", part_of)
    if hours:
        loc["hoursOfOperation"] = hours
    return loc


def _clinic_hours(dept: str) -> list[dict[str, Any]]:
    if dept == "20":
        return [_hours(ALL_DAYS)]
    if dept == "01":
        return [_hours(["tue", "thu", "sat"], "08:00:00", "11:30:00")]
    return [_hours(WEEKDAYS, "08:00:00", "17:30:00"), _hours(["sat"], "08:00:00", "12:00:00")]


def locations(f: Facility) -> list[dict[str, Any]]:
    """Site, buildings, clinics and wards, parents before children."""
    site_type = ("HOSP", "Hospital") if f.is_hospital else ("PC", "Primary care clinic")
    out = [
        _location(f.site_id, f.name, f, ("si", "Site"), site_type, None, None, with_address=True)
    ]
    opd = f.site_id
    if f.is_hospital:
        opd = f"{f.site_id}-opd"
        out.append(_location(opd, f"{f.name}门诊楼", f, ("bu", "Building"), None, f.site_id, None))
        if f.wards:
            out.append(
                _location(
                    f"{f.site_id}-ipd",
                    f"{f.name}住院楼",
                    f,
                    ("bu", "Building"),
                    None,
                    f.site_id,
                    None,
                )
            )
    for dept in f.departments:
        if dept == "20":
            out.append(
                _location(
                    f.clinic_id(dept),
                    f"{f.name}{f.dept_name(dept)}",
                    f,
                    ("wi", "Wing"),
                    LOCATION_TYPE["20"],
                    f.site_id,
                    _clinic_hours(dept),
                )
            )
            continue
        room = "预防接种门诊" if dept == "01" else f"{f.dept_name(dept)}门诊"
        if dept == "02":
            room = "全科诊室"
        out.append(
            _location(
                f.clinic_id(dept),
                room,
                f,
                ("ro", "Room"),
                LOCATION_TYPE.get(dept, ("OF", "Outpatient facility")),
                opd,
                _clinic_hours(dept),
            )
        )
    for dept, ward in f.wards:
        ward_type = ("PEDU", "Pediatric unit") if dept in ("07", "08") else ("HU", "Hospital unit")
        wid = f.ward_id(dept)
        assert wid is not None
        out.append(
            _location(
                wid, ward, f, ("wa", "Ward"), ward_type, f"{f.site_id}-ipd", [_hours(ALL_DAYS)]
            )
        )
    return out


def healthcare_services(f: Facility) -> list[dict[str, Any]]:
    out = []
    for dept in f.departments:
        name = f.dept_name(dept)
        if dept == "01":
            name = "预防接种"
        elif dept == "02":
            name = "全科门诊（家庭医生）"
        hs: dict[str, Any] = {
            "resourceType": "HealthcareService",
            "id": f.service_id(dept),
            "meta": meta(),
            "active": True,
            "providedBy": ref("Organization", f.org_id, f.name),
        }
        if dept in CATEGORY:
            hs["category"] = [concept(coding(SERVICE_CATEGORY, *CATEGORY[dept]))]
        elif f.is_hospital:
            hs["category"] = [concept(coding(SERVICE_CATEGORY, "35", "Hospital"))]
        codings = [department_coding(dept)]
        if dept in SERVICE_TYPES:
            codings.append(coding(SERVICE_TYPE, *SERVICE_TYPES[dept]))
        hs["type"] = [concept(*codings, text=name)]
        if dept in SPECIALTY:
            hs["specialty"] = [concept(coding(SNOMED, *SPECIALTY[dept]))]
        hs["location"] = [ref("Location", f.clinic_id(dept))]
        hs["name"] = name
        hs["comment"] = f"{f.name}{name}"
        hs["appointmentRequired"] = dept == "01"
        if dept == "20":
            hs["availableTime"] = [{"daysOfWeek": ALL_DAYS, "allDay": True}]
        elif dept == "01":
            hs["availableTime"] = [
                {
                    "daysOfWeek": ["tue", "thu", "sat"],
                    "availableStartTime": "08:00:00",
                    "availableEndTime": "11:30:00",
                }
            ]
        else:
            hs["availableTime"] = [
                {
                    "daysOfWeek": WEEKDAYS,
                    "availableStartTime": "08:00:00",
                    "availableEndTime": "17:30:00",
                },
                {
                    "daysOfWeek": ["sat"],
                    "availableStartTime": "08:00:00",
                    "availableEndTime": "12:00:00",
                },
            ]
        out.append(hs)
    return out
