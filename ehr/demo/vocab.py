"""Clinical and local vocabularies of the demo city.

- Diagnoses: WHO ICD-10 (``http://hl7.org/fhir/sid/icd-10``) with Chinese displays. Chinese
  hospitals code with the national clinical extension (国家临床版, e.g. ``I10.x00``); the demo keeps
  the WHO category codes every ICD-10 consumer understands.
- Vital signs: LOINC codes and UCUM units of the R4 vital-signs profiles
  (http://hl7.org/fhir/R4/observation-vitalsigns.html).
- Laboratory: LOINC, SI units as Chinese laboratories report them (glucose in mmol/L is
  ``14771-0`` fasting glucose [Moles/volume], not the mass-concentration ``2339-0``).
- Medicines: a local drug code with the WHO ATC code as a second coding
  (http://hl7.org/fhir/R4/medicationrequest.html).
- Vaccines: CDC CVX (``http://hl7.org/fhir/sid/cvx``) with the Chinese vaccine name as text.
- Local code systems (organisation kind, hospital grade, professional title, qualification,
  allergen) under :data:`ehr.codesystems.CANONICAL_BASE`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ehr.codesystems import CANONICAL_BASE

# ------------------------------------------------------------------------ local code systems

ORG_KIND_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/organization-kind"
HOSPITAL_GRADE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/hospital-grade"
TITLE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/professional-title"
QUALIFICATION_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/practitioner-qualification"
DRUG_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/drug"
ALLERGEN_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/allergen"

ORG_KINDS = {
    "general-hospital": "综合医院",
    "tcm-hospital": "中医医院",
    "maternal-child-health": "妇幼保健院",
    "childrens-hospital": "儿童医院",
    "community-health-centre": "社区卫生服务中心",
    "township-health-centre": "乡镇卫生院",
}
HOSPITAL_GRADES = {"3A": "三级甲等", "3B": "三级乙等", "2A": "二级甲等", "1": "一级"}
TITLES = {
    "chief-physician": "主任医师",
    "associate-chief-physician": "副主任医师",
    "attending-physician": "主治医师",
    "resident-physician": "住院医师",
    "charge-nurse": "主管护师",
    "senior-nurse": "护师",
    "nurse": "护士",
}
QUALIFICATIONS = {"physician": "执业医师", "nurse": "注册护士"}

# ----------------------------------------------------------------------------------- ICD-10

#: the chronic diseases followed up at the community health centre
CARDIOMETABOLIC = ("I10", "E11.9", "E78.5", "I25.1")

ICD10_NAMES: dict[str, str] = {
    "I10": "原发性高血压",
    "E11.9": "2型糖尿病，不伴有并发症",
    "E78.5": "高脂血症",
    "I25.1": "动脉粥样硬化性心脏病",
    "J45.9": "哮喘",
    "H52.1": "近视",
    "K29.5": "慢性胃炎",
    "J06.9": "急性上呼吸道感染",
    "J02.9": "急性咽炎",
    "K52.9": "胃肠炎",
    "K02.9": "龋病",
    "H10.9": "结膜炎",
    "M54.5": "腰痛",
    "S52.5": "桡骨下端骨折",
    "K35.8": "急性阑尾炎",
    "J18.9": "肺炎",
    "Z34.9": "正常妊娠监督",
    "Z00.0": "一般医学检查",
    "Z00.1": "儿童常规健康检查",
}

# ----------------------------------------------------------------- vital signs and laboratory


@dataclass(frozen=True)
class ObsKind:
    key: str  # id suffix
    loinc: str
    display: str
    text: str  # Chinese label
    unit: str
    ucum: str
    profile: str | None  # R4 vital-signs profile, None for laboratory
    extra_codings: tuple[tuple[str, str], ...] = ()


_VS = "http://hl7.org/fhir/StructureDefinition/"

VITALS: dict[str, ObsKind] = {
    "hr": ObsKind("hr", "8867-4", "Heart rate", "心率", "beats/minute", "/min", _VS + "heartrate"),
    "bp": ObsKind("bp", "85354-9", "Blood pressure panel with all children optional", "血压",
                  "mmHg", "mm[Hg]", _VS + "bp"),
    "temp": ObsKind("temp", "8310-5", "Body temperature", "体温", "°C", "Cel", _VS + "bodytemp"),
    "wt": ObsKind("wt", "29463-7", "Body weight", "体重", "kg", "kg", _VS + "bodyweight"),
    "ht": ObsKind("ht", "8302-2", "Body height", "身高", "cm", "cm", _VS + "bodyheight"),
    "spo2": ObsKind("spo2", "2708-6", "Oxygen saturation in Arterial blood", "血氧饱和度", "%",
                    "%", _VS + "oxygensat",
                    (("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),)),
    "bmi": ObsKind("bmi", "39156-5", "Body mass index (BMI) [Ratio]", "体质指数", "kg/m2",
                   "kg/m2", _VS + "bmi"),
}  # fmt: skip
BP_SYSTOLIC = ("8480-6", "Systolic blood pressure", "收缩压")
BP_DIASTOLIC = ("8462-4", "Diastolic blood pressure", "舒张压")

LABS: dict[str, ObsKind] = {
    "glu": ObsKind("glu", "14771-0", "Fasting glucose [Moles/volume] in Serum or Plasma",
                   "空腹血糖", "mmol/L", "mmol/L", None),
    "a1c": ObsKind("a1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood",
                   "糖化血红蛋白", "%", "%", None),
    "chol": ObsKind("chol", "14647-2", "Cholesterol [Moles/volume] in Serum or Plasma",
                    "总胆固醇", "mmol/L", "mmol/L", None),
}  # fmt: skip
#: reference intervals (low, high) in the unit above
LAB_RANGES = {"glu": (3.9, 6.1), "a1c": (4.0, 6.0), "chol": (2.8, 5.2)}

# ------------------------------------------------------------------------------- medicines


@dataclass(frozen=True)
class Drug:
    code: str
    name: str
    atc: str | None
    atc_display: str | None
    instruction: str
    per_day: int
    dose: tuple[float, str] | None  # (value, UCUM) for a mass dose
    route: str  # key of ROUTES


ROUTES = {
    "oral": ("26643006", "Oral route", "口服"),
    "iv": ("47625008", "Intravenous route", "静脉滴注"),
    "inhaled": (None, None, "吸入"),
    "eye": (None, None, "滴眼"),
}

DRUGS: dict[str, Drug] = {d.code: d for d in (
    Drug("amlodipine", "苯磺酸氨氯地平片 5mg", "C08CA01", "amlodipine",
         "每日一次，每次5mg，口服", 1, (5, "mg"), "oral"),
    Drug("valsartan", "缬沙坦胶囊 80mg", "C09CA03", "valsartan",
         "每日一次，每次80mg，口服", 1, (80, "mg"), "oral"),
    Drug("metformin", "盐酸二甲双胍片 0.5g", "A10BA02", "metformin",
         "每日三次，每次0.5g，餐中口服", 3, (500, "mg"), "oral"),
    Drug("atorvastatin", "阿托伐他汀钙片 20mg", "C10AA05", "atorvastatin",
         "每晚一次，每次20mg，口服", 1, (20, "mg"), "oral"),
    Drug("aspirin", "阿司匹林肠溶片 100mg", "B01AC06", "acetylsalicylic acid",
         "每日一次，每次100mg，口服", 1, (100, "mg"), "oral"),
    Drug("budesonide-formoterol", "布地奈德福莫特罗吸入粉雾剂 160μg/4.5μg", "R03AK07",
         "formoterol and budesonide", "每日两次，每次1吸", 2, None, "inhaled"),
    Drug("montelukast", "孟鲁司特钠咀嚼片 4mg", "R03DC03", "montelukast",
         "每晚一次，每次4mg，口服", 1, (4, "mg"), "oral"),
    Drug("amoxicillin", "阿莫西林胶囊 0.25g", "J01CA04", "amoxicillin",
         "每日三次，每次0.5g，口服，疗程5天", 3, (500, "mg"), "oral"),
    Drug("cefuroxime", "注射用头孢呋辛钠 1.5g", "J01DC02", "cefuroxime",
         "每8小时一次，每次1.5g，静脉滴注", 3, (1.5, "g"), "iv"),
    Drug("omeprazole", "奥美拉唑肠溶胶囊 20mg", "A02BC01", "omeprazole",
         "每日一次，每次20mg，早餐前口服", 1, (20, "mg"), "oral"),
    Drug("ibuprofen", "布洛芬缓释胶囊 0.3g", "M01AE01", "ibuprofen",
         "每日两次，每次0.3g，口服", 2, (300, "mg"), "oral"),
    Drug("paracetamol", "对乙酰氨基酚混悬滴剂", "N02BE01", "paracetamol",
         "体温超过38.5℃时口服，每次15mg/kg，间隔4至6小时", 4, None, "oral"),
    Drug("lianhua", "连花清瘟胶囊", None, None, "每日三次，每次4粒，口服", 3, None, "oral"),
    Drug("ors", "口服补液盐散（III）", "A07CA", "oral rehydration salt formulations",
         "每袋溶于250mL温开水，少量多次口服", 3, None, "oral"),
    Drug("folic-acid", "叶酸片 0.4mg", "B03BB01", "folic acid",
         "每日一次，每次0.4mg，口服", 1, (0.4, "mg"), "oral"),
    Drug("atropine-eye", "0.01%硫酸阿托品滴眼液", "S01FA01", "atropine",
         "每晚一次，每眼1滴", 1, None, "eye"),
)}  # fmt: skip

# ---------------------------------------------------------------------------------- vaccines


@dataclass(frozen=True)
class Vaccine:
    code: str
    name: str
    cvx: str
    cvx_display: str
    route: str  # v3-RouteOfAdministration
    site: str | None  # v3-ActSite
    dose_ml: float


VACCINES: dict[str, Vaccine] = {v.code: v for v in (
    Vaccine("hepb", "乙型肝炎疫苗", "08", "Hep B, adolescent or pediatric", "IM", "RA", 0.5),
    Vaccine("bcg", "皮内注射用卡介苗", "19", "BCG", "IDINJ", "LA", 0.1),
    Vaccine("ipv", "脊髓灰质炎灭活疫苗", "10", "IPV", "IM", "LA", 0.5),
    Vaccine("dtap", "吸附无细胞百白破联合疫苗", "20", "DTaP", "IM", "RA", 0.5),
    Vaccine("mmr", "麻疹腮腺炎风疹联合减毒活疫苗", "03", "MMR", "SQ", "LA", 0.5),
    Vaccine("hepa", "甲型肝炎疫苗", "85", "Hep A, unspecified formulation", "SQ", "RA", 0.5),
    Vaccine("flu", "流感病毒裂解疫苗", "141", "Influenza, seasonal, injectable", "IM", "LA", 0.5),
    Vaccine("ppsv23", "23价肺炎球菌多糖疫苗", "33", "pneumococcal polysaccharide PPV23", "IM",
            "LA", 0.5),
)}  # fmt: skip

#: national immunisation schedule used for children: (vaccine, age in months, dose number)
CHILD_SCHEDULE: tuple[tuple[str, int, int], ...] = (
    ("hepb", 0, 1), ("bcg", 0, 1), ("hepb", 1, 2), ("ipv", 2, 1), ("ipv", 3, 2),
    ("dtap", 3, 1), ("dtap", 4, 2), ("dtap", 5, 3), ("hepb", 6, 3), ("mmr", 8, 1),
    ("mmr", 18, 2), ("dtap", 18, 4), ("hepa", 18, 1),
)  # fmt: skip

# --------------------------------------------------------------------------------- allergens


@dataclass(frozen=True)
class Allergen:
    code: str
    name: str
    category: str  # allergy-intolerance-category
    snomed: tuple[str, str] | None
    criticality: str


ALLERGENS: dict[str, Allergen] = {a.code: a for a in (
    Allergen("penicillin", "青霉素类抗生素", "medication", ("764146007", "Penicillin"), "high"),
    Allergen("cephalosporin", "头孢菌素类抗生素", "medication", None, "high"),
    Allergen("sulfonamide", "磺胺类药物", "medication", None, "low"),
    Allergen("seafood", "海鲜", "food", None, "low"),
    Allergen("peanut", "花生", "food", None, "high"),
    Allergen("egg", "鸡蛋", "food", None, "low"),
    Allergen("pollen", "花粉", "environment", None, "low"),
    Allergen("dust-mite", "尘螨", "environment", None, "low"),
)}  # fmt: skip

#: reaction manifestations: key -> (SNOMED code, display, Chinese text)
MANIFESTATIONS = {
    "urticaria": ("64305001", "Urticaria", "荨麻疹"),
    "rash": ("271807003", "Eruption of skin", "皮疹"),
    "anaphylaxis": ("39579001", "Anaphylaxis", "过敏性休克"),
}
