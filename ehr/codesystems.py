"""Chinese national code systems we carry on FHIR resources, and the extensions that carry them.

FHIR terminology: http://hl7.org/fhir/R4/terminologies.html ; extensions:
http://hl7.org/fhir/R4/extensibility.html ; Patient.gender:
http://hl7.org/fhir/R4/patient-definitions.html#Patient.gender

- **GB/T 2261.1-2003 人的性别代码** (sex): ``0`` 未知的性别, ``1`` 男性, ``2`` 女性, ``9`` 未说明的性别.
  FHIR ``Patient.gender`` (administrative-gender) stays the required element; the GB code rides
  along in the :data:`SEX_EXTENSION` extension (``valueCoding``).
- **GB 3304-1991 中国各民族名称的罗马字母拼写法和代码** (ethnicity): the 56 nationalities ``01``-``56``
  plus ``97`` 其他 and ``98`` 外国血统中国籍人士, carried in :data:`ETHNICITY_EXTENSION`.
- **医疗机构诊疗科目名录** (卫医发〔1994〕27号): department codes (``03`` 内科, ``03.04`` 心血管内科 ...),
  a local code system :data:`DEPARTMENT_SYSTEM` used on HealthcareService, PractitionerRole and
  Encounter.serviceType.

System URIs are the OIDs of the national health information standards (WS 364 / WS/T 500 CDA
headers use ``2.16.156.10011.2.3.3.4`` for GB/T 2261.1 and ``2.16.156.10011.2.3.3.3`` for
GB 3304), written as ``urn:oid:`` URIs as FHIR asks for OIDs
(http://hl7.org/fhir/R4/datatypes.html#uri). Extension and local code system URLs live under
:data:`CANONICAL_BASE`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CANONICAL_BASE",
    "SEX_SYSTEM",
    "SEXES",
    "SEX_EXTENSION",
    "ETHNICITY_SYSTEM",
    "ETHNICITIES",
    "ETHNICITY_EXTENSION",
    "DEPARTMENT_SYSTEM",
    "DEPARTMENTS",
    "gb_sex_to_gender",
    "gender_to_gb_sex",
    "sex_coding",
    "sex_extension",
    "ethnicity_coding",
    "ethnicity_extension",
    "department_coding",
]

#: base of every canonical URL this exchange defines (StructureDefinition, CodeSystem, sid)
CANONICAL_BASE = "https://ehr.example.cn/fhir"

# --------------------------------------------------------------------------------------- sex

#: GB/T 2261.1-2003 生理性别代码表
SEX_SYSTEM = "urn:oid:2.16.156.10011.2.3.3.4"

SEXES: dict[str, str] = {
    "0": "未知的性别",
    "1": "男性",
    "2": "女性",
    "9": "未说明的性别",
}

#: Patient extension, ``valueCoding`` from :data:`SEX_SYSTEM`
SEX_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/patient-sex-gb2261"

_SEX_TO_GENDER = {"0": "unknown", "1": "male", "2": "female", "9": "unknown"}
_GENDER_TO_SEX = {"male": "1", "female": "2", "unknown": "0", "other": "9"}


def gb_sex_to_gender(code: str) -> str:
    """GB/T 2261.1 code -> FHIR administrative-gender. ``0`` and ``9`` both become ``unknown``."""
    try:
        return _SEX_TO_GENDER[code]
    except KeyError:
        raise ValueError(f"not a GB/T 2261.1 sex code: {code!r}") from None


def gender_to_gb_sex(gender: str) -> str:
    """FHIR administrative-gender -> GB/T 2261.1. ``other`` has no GB code and becomes ``9``
    (未说明的性别, "not stated"); ``unknown`` becomes ``0``."""
    try:
        return _GENDER_TO_SEX[gender]
    except KeyError:
        raise ValueError(f"not an administrative-gender code: {gender!r}") from None


def sex_coding(code: str) -> dict[str, Any]:
    if code not in SEXES:
        raise ValueError(f"not a GB/T 2261.1 sex code: {code!r}")
    return {"system": SEX_SYSTEM, "code": code, "display": SEXES[code]}


def sex_extension(code: str) -> dict[str, Any]:
    return {"url": SEX_EXTENSION, "valueCoding": sex_coding(code)}


# --------------------------------------------------------------------------------- ethnicity

#: GB 3304-1991 民族类别代码表
ETHNICITY_SYSTEM = "urn:oid:2.16.156.10011.2.3.3.3"

ETHNICITIES: dict[str, str] = {
    "01": "汉族",
    "02": "蒙古族",
    "03": "回族",
    "04": "藏族",
    "05": "维吾尔族",
    "06": "苗族",
    "07": "彝族",
    "08": "壮族",
    "09": "布依族",
    "10": "朝鲜族",
    "11": "满族",
    "12": "侗族",
    "13": "瑶族",
    "14": "白族",
    "15": "土家族",
    "16": "哈尼族",
    "17": "哈萨克族",
    "18": "傣族",
    "19": "黎族",
    "20": "傈僳族",
    "21": "佤族",
    "22": "畲族",
    "23": "高山族",
    "24": "拉祜族",
    "25": "水族",
    "26": "东乡族",
    "27": "纳西族",
    "28": "景颇族",
    "29": "柯尔克孜族",
    "30": "土族",
    "31": "达斡尔族",
    "32": "仫佬族",
    "33": "羌族",
    "34": "布朗族",
    "35": "撒拉族",
    "36": "毛南族",
    "37": "仡佬族",
    "38": "锡伯族",
    "39": "阿昌族",
    "40": "普米族",
    "41": "塔吉克族",
    "42": "怒族",
    "43": "乌孜别克族",
    "44": "俄罗斯族",
    "45": "鄂温克族",
    "46": "德昂族",
    "47": "保安族",
    "48": "裕固族",
    "49": "京族",
    "50": "塔塔尔族",
    "51": "独龙族",
    "52": "鄂伦春族",
    "53": "赫哲族",
    "54": "门巴族",
    "55": "珞巴族",
    "56": "基诺族",
    "97": "其他",
    "98": "外国血统中国籍人士",
}

#: Patient extension, ``valueCoding`` from :data:`ETHNICITY_SYSTEM`
ETHNICITY_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/patient-ethnicity-gb3304"


def ethnicity_coding(code: str) -> dict[str, Any]:
    if code not in ETHNICITIES:
        raise ValueError(f"not a GB 3304 ethnicity code: {code!r}")
    return {"system": ETHNICITY_SYSTEM, "code": code, "display": ETHNICITIES[code]}


def ethnicity_extension(code: str) -> dict[str, Any]:
    return {"url": ETHNICITY_EXTENSION, "valueCoding": ethnicity_coding(code)}


# ------------------------------------------------------------------------------- departments

#: 医疗机构诊疗科目名录 (卫医发〔1994〕27号); a local code system until a national URI exists
DEPARTMENT_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/department"

DEPARTMENTS: dict[str, str] = {
    "01": "预防保健科",
    "02": "全科医疗科",
    "03": "内科",
    "03.04": "心血管内科专业",
    "03.07": "内分泌专业",
    "04": "外科",
    "04.03": "骨科专业",
    "05": "妇产科",
    "05.01": "妇科专业",
    "05.02": "产科专业",
    "06": "妇女保健科",
    "07": "儿科",
    "08": "小儿外科",
    "09": "儿童保健科",
    "10": "眼科",
    "11": "耳鼻咽喉科",
    "12": "口腔科",
    "13": "皮肤科",
    "20": "急诊医学科",
    "21": "康复医学科",
    "50": "中医科",
    "50.10": "骨伤科专业",
    "50.13": "针灸科专业",
}


def department_coding(code: str) -> dict[str, Any]:
    if code not in DEPARTMENTS:
        raise ValueError(f"not a department code: {code!r}")
    return {"system": DEPARTMENT_SYSTEM, "code": code, "display": DEPARTMENTS[code]}
