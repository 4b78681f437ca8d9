"""ehr.identifiers and ehr.codesystems: the citizen ID (GB 11643), its protected form, GB/T 2261.1
sex and GB 3304 ethnicity codes."""

from __future__ import annotations

import json
from datetime import date

import pytest

from ehr.codesystems import (
    ETHNICITIES,
    ETHNICITY_EXTENSION,
    ETHNICITY_SYSTEM,
    SEX_SYSTEM,
    SEXES,
    ethnicity_extension,
    gb_sex_to_gender,
    gender_to_gb_sex,
    sex_coding,
)
from ehr.identifiers import (
    CITIZEN_ID_HASH_SYSTEM,
    CITIZEN_ID_SYSTEM,
    MASKED_VALUE_EXTENSION,
    citizen_id_birth_date,
    citizen_id_check_digit,
    citizen_id_identifier,
    citizen_id_sex,
    hash_citizen_id,
    is_valid_citizen_id,
    is_valid_org_code,
    make_citizen_id,
    mask_citizen_id,
    mrn_system,
    org_code_check_digit,
)

KNOWN_VALID = ["11010519491231002X", "440524188001010014"]


def test_check_digit_of_the_standard_example_worked_by_hand() -> None:
    # weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2 over 11010519491231002 sum to 167;
    # 167 mod 11 = 2, and position 2 of "10X98765432" is X
    assert citizen_id_check_digit("11010519491231002") == "X"
    assert citizen_id_check_digit("44052418800101001") == "4"


@pytest.mark.parametrize("cid", KNOWN_VALID + ["11010519491231002x", " 11010519491231002X "])
def test_known_ids_are_valid(cid: str) -> None:
    assert is_valid_citizen_id(cid)


@pytest.mark.parametrize(
    "cid, why",
    [
        ("110105194912310021", "wrong check digit"),
        ("11010519491231002Y", "not 0-9 or X"),
        ("1101051949123100", "too short"),
        ("11010519491231002X0", "too long"),
        ("X10105194912310021", "letter in the body"),
        ("", "empty"),
    ],
)
def test_malformed_ids_are_rejected(cid: str, why: str) -> None:
    assert not is_valid_citizen_id(cid), why


@pytest.mark.parametrize(
    "body, why",
    [
        ("11010519490230002", "30 February"),
        ("99010519491231002", "no province 99"),
        ("11010521000101001", "born in 2100"),
        ("11010518700101001", "born before 1880"),
    ],
)
def test_ids_with_a_right_check_digit_but_wrong_content_are_rejected(body: str, why: str) -> None:
    assert not is_valid_citizen_id(body + citizen_id_check_digit(body), today=date(2026, 1, 1)), why


def test_birth_date_must_not_be_after_today() -> None:
    cid = make_citizen_id("110105", date(2025, 6, 1), 123, female=False)
    assert is_valid_citizen_id(cid, today=date(2025, 6, 1))
    assert not is_valid_citizen_id(cid, today=date(2025, 5, 31))


def test_make_citizen_id_round_trip() -> None:
    born = date(1990, 5, 6)
    man = make_citizen_id("329902", born, 123, female=False)
    woman = make_citizen_id("329902", born, 124, female=True)
    assert man.startswith("32990219900506123") and len(man) == 18
    for cid, sex in ((man, "1"), (woman, "2")):
        assert is_valid_citizen_id(cid, today=date(2026, 1, 1))
        assert citizen_id_birth_date(cid) == born
        assert citizen_id_sex(cid) == sex


def test_make_citizen_id_refuses_the_wrong_sex_digit() -> None:
    with pytest.raises(ValueError, match="parity"):
        make_citizen_id("329902", date(1990, 5, 6), 124, female=False)
    with pytest.raises(ValueError, match="parity"):
        make_citizen_id("329902", date(1990, 5, 6), 123, female=True)
    with pytest.raises(ValueError):
        make_citizen_id("32990", date(1990, 5, 6), 123, female=False)


def test_mask_keeps_head_and_tail() -> None:
    assert mask_citizen_id("11010519491231002X") == "110105********002X"
    assert mask_citizen_id("11010519491231002x") == "110105********002X"
    assert mask_citizen_id("11010519491231002X", 6, 0) == "110105************"


def test_receipt_mask_plus_birth_date_gives_the_id_back() -> None:
    # why the stored mask keeps no tail: the usual mask only hides what birthDate states
    cid = "11010519491231002X"
    masked, birth = mask_citizen_id(cid), date(1949, 12, 31)
    assert masked[:6] + f"{birth:%Y%m%d}" + masked[-4:] == cid


def test_hash_is_keyed_normalised_and_stable() -> None:
    h = hash_citizen_id("11010519491231002X", b"golden-key")
    # pinned: changing the normalisation or algorithm would orphan every stored identifier
    assert h == "f38722f04fb13c04e815063d98409f3afe995ca7087a8fcbd85167ff1dbfcecb"
    assert hash_citizen_id(" 11010519491231002x", b"golden-key") == h
    assert hash_citizen_id("11010519491231002X", b"other-key") != h
    with pytest.raises(ValueError):
        hash_citizen_id("11010519491231002X", b"")


def test_protected_identifier_carries_no_clear_id() -> None:
    cid = "11010519491231002X"
    ident = citizen_id_identifier(cid, b"k")
    assert ident["system"] == CITIZEN_ID_HASH_SYSTEM != CITIZEN_ID_SYSTEM
    assert ident["value"] == hash_citizen_id(cid, b"k")
    assert ident["extension"] == [
        {"url": MASKED_VALUE_EXTENSION, "valueString": "110105" + "*" * 12}
    ]
    text = json.dumps(ident)
    assert cid not in text and cid[:17] not in text and cid[-4:] not in text


def test_protected_identifier_refuses_an_invalid_id() -> None:
    with pytest.raises(ValueError):
        citizen_id_identifier("110105194912310021", b"k")


def test_citizen_id_system_is_the_health_standards_patient_id_root() -> None:
    assert CITIZEN_ID_SYSTEM == "urn:oid:2.16.156.10011.1.3"


def test_organisation_code_check_digit() -> None:
    assert org_code_check_digit("D2143569") == "X"  # the example of GB 11714
    assert is_valid_org_code("D2143569-X")
    assert not is_valid_org_code("D2143569-1")
    assert not is_valid_org_code("D214356")


def test_mrn_system_per_hospital() -> None:
    assert mrn_system("org-h1") == "https://ehr.example.cn/fhir/sid/mrn/org-h1"
    assert mrn_system("org-h1") != mrn_system("org-h2")


# ---------------------------------------------------------------------------- codesystems


def test_sex_codes_and_gender_mapping() -> None:
    assert SEXES == {"0": "未知的性别", "1": "男性", "2": "女性", "9": "未说明的性别"}
    assert [gb_sex_to_gender(c) for c in "0129"] == ["unknown", "male", "female", "unknown"]
    assert [gender_to_gb_sex(g) for g in ("male", "female", "unknown", "other")] == [
        "1",
        "2",
        "0",
        "9",
    ]
    assert sex_coding("2") == {"system": SEX_SYSTEM, "code": "2", "display": "女性"}
    with pytest.raises(ValueError):
        gb_sex_to_gender("3")
    with pytest.raises(ValueError):
        sex_coding("M")


def test_all_56_nationalities() -> None:
    numbered = [c for c in ETHNICITIES if int(c) <= 56]
    assert numbered == [f"{i:02d}" for i in range(1, 57)]
    assert all(ETHNICITIES[c].endswith("族") for c in numbered)
    assert len(set(ETHNICITIES.values())) == len(ETHNICITIES)
    assert (ETHNICITIES["01"], ETHNICITIES["02"], ETHNICITIES["56"]) == ("汉族", "蒙古族", "基诺族")
    assert ETHNICITIES["97"] == "其他" and ETHNICITIES["98"] == "外国血统中国籍人士"


def test_ethnicity_extension() -> None:
    assert ethnicity_extension("03") == {
        "url": ETHNICITY_EXTENSION,
        "valueCoding": {"system": ETHNICITY_SYSTEM, "code": "03", "display": "回族"},
    }
    with pytest.raises(ValueError):
        ethnicity_extension("57")
