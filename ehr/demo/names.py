"""Chinese personal names for the demo, with their Hanyu Pinyin (http://hl7.org/fhir/R4/datatypes.html#HumanName).

A person gets two ``HumanName`` entries, both ``use: official``:

1. the Han-character name: ``text`` "张伟", ``family`` "张", ``given`` ["伟"], marked as ideographic
   with the core extension ``iso21090-EN-representation`` = ``IDE`` and language ``zh-CN``;
2. its romanisation per GB/T 28039-2011 (中国人名汉语拼音字母拼写规则): ``text`` "Zhang Wei",
   ``family`` "Zhang", ``given`` ["Wei"], marked ``ABC`` (alphabetic) and ``zh-Latn-pinyin``.

The representation extension is the one FHIR names for exactly this (one name written in several
scripts); ``use: usual`` would claim the pinyin is what the person is usually called, which it
is not. Given names are one word (``Jianguo``), with an apostrophe before a syllable that starts
with a, o or e (``Yi'an``); ``ü`` is kept (``Lü``), as the rules ask.

The character tables are the demo's own: frequent surnames with rough weights, and given-name
characters in three generational pools, each character with its (toneless) pinyin.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["SURNAMES", "PINYIN", "Name", "pick_surname", "pick_given", "pinyin_of", "human_names"]

EN_REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
LANGUAGE = "http://hl7.org/fhir/StructureDefinition/language"

#: surname -> (pinyin, weight ~ share of the population in per mille)
SURNAMES: dict[str, tuple[str, float]] = {
    "王": ("Wang", 71), "李": ("Li", 70), "张": ("Zhang", 67), "刘": ("Liu", 54),
    "陈": ("Chen", 45), "杨": ("Yang", 31), "黄": ("Huang", 22), "赵": ("Zhao", 20),
    "吴": ("Wu", 20), "周": ("Zhou", 19), "徐": ("Xu", 15), "孙": ("Sun", 14),
    "马": ("Ma", 13), "朱": ("Zhu", 13), "胡": ("Hu", 12), "郭": ("Guo", 12),
    "何": ("He", 11), "高": ("Gao", 11), "林": ("Lin", 11), "罗": ("Luo", 9),
    "郑": ("Zheng", 9), "梁": ("Liang", 9), "谢": ("Xie", 8), "宋": ("Song", 8),
    "唐": ("Tang", 8), "许": ("Xu", 7), "韩": ("Han", 7), "冯": ("Feng", 7),
    "邓": ("Deng", 7), "曹": ("Cao", 7), "彭": ("Peng", 6), "曾": ("Zeng", 6),
    "肖": ("Xiao", 6), "田": ("Tian", 6), "董": ("Dong", 5), "袁": ("Yuan", 5),
    "潘": ("Pan", 5), "于": ("Yu", 5), "蒋": ("Jiang", 5), "蔡": ("Cai", 5),
    "余": ("Yu", 5), "杜": ("Du", 5), "叶": ("Ye", 5), "程": ("Cheng", 5),
    "苏": ("Su", 4), "魏": ("Wei", 4), "吕": ("Lü", 4), "丁": ("Ding", 4),
    "任": ("Ren", 4), "沈": ("Shen", 4), "姚": ("Yao", 4), "卢": ("Lu", 4),
    "姜": ("Jiang", 3), "崔": ("Cui", 3), "钟": ("Zhong", 3), "谭": ("Tan", 3),
    "陆": ("Lu", 3), "汪": ("Wang", 3), "范": ("Fan", 3), "金": ("Jin", 3),
    "石": ("Shi", 3), "廖": ("Liao", 3), "贾": ("Jia", 3), "夏": ("Xia", 3),
    "韦": ("Wei", 3), "欧阳": ("Ouyang", 2), "司马": ("Sima", 0.2),
    "诸葛": ("Zhuge", 0.2), "上官": ("Shangguan", 0.2),
}  # fmt: skip

#: given-name character -> pinyin syllable (toneless, lower case)
PINYIN: dict[str, str] = {
    "伟": "wei", "强": "qiang", "磊": "lei", "军": "jun", "勇": "yong", "杰": "jie", "涛": "tao",
    "斌": "bin", "超": "chao", "明": "ming", "刚": "gang", "平": "ping", "辉": "hui", "鹏": "peng",
    "华": "hua", "飞": "fei", "鑫": "xin", "波": "bo", "宇": "yu", "浩": "hao", "凯": "kai",
    "健": "jian", "俊": "jun", "帆": "fan", "建": "jian", "国": "guo", "志": "zhi", "文": "wen",
    "博": "bo", "子": "zi", "轩": "xuan", "睿": "rui", "泽": "ze", "晨": "chen", "亮": "liang",
    "成": "cheng", "康": "kang", "海": "hai", "峰": "feng", "毅": "yi", "振": "zhen", "东": "dong",
    "永": "yong", "庆": "qing", "德": "de", "一": "yi", "航": "hang", "铭": "ming", "然": "ran",
    "安": "an", "嘉": "jia", "豪": "hao", "宏": "hong", "林": "lin", "福": "fu", "生": "sheng",
    "金": "jin", "贵": "gui", "荣": "rong", "新": "xin", "春": "chun", "民": "min", "祥": "xiang",
    "奕": "yi", "沐": "mu", "辰": "chen", "皓": "hao", "梓": "zi", "恩": "en", "昊": "hao",
    "诺": "nuo", "芳": "fang", "娜": "na", "敏": "min", "静": "jing", "丽": "li", "艳": "yan",
    "娟": "juan", "霞": "xia", "秀": "xiu", "英": "ying", "玲": "ling", "燕": "yan", "红": "hong",
    "梅": "mei", "琳": "lin", "雪": "xue", "慧": "hui", "婷": "ting", "晶": "jing", "洁": "jie",
    "颖": "ying", "倩": "qian", "欣": "xin", "怡": "yi", "佳": "jia", "琪": "qi", "涵": "han",
    "萱": "xuan", "雨": "yu", "诗": "shi", "梦": "meng", "悦": "yue", "桂": "gui", "兰": "lan",
    "凤": "feng", "淑": "shu", "珍": "zhen", "晓": "xiao", "玉": "yu", "秋": "qiu", "云": "yun",
    "翠": "cui", "素": "su", "莲": "lian", "思": "si", "可": "ke", "欢": "huan", "彤": "tong",
    "瑶": "yao", "妍": "yan", "若": "ruo", "汐": "xi", "语": "yu", "桐": "tong", "爱": "ai",
    "月": "yue", "小": "xiao",
}  # fmt: skip

# generational pools: (born before 1960, 1960-1989, 1990 and later) x (male, female)
_POOLS: dict[tuple[int, bool], str] = {
    (0, False): "建国志德福金贵永祥春生华庆明荣民林海",
    (0, True): "桂兰淑珍秀英凤玉翠素莲华芳梅红云秋",
    (1, False): "伟强磊军勇杰涛斌超明刚平辉鹏华飞波健建东峰毅振海亮成康宏林新",
    (1, True): "芳娜敏静丽艳娟霞玲燕红梅琳雪慧婷晶洁颖倩晓玉云",
    (2, False): "宇浩凯俊帆博子轩睿泽晨一航铭然安嘉豪奕沐辰皓梓恩昊诺鑫",
    (2, True): "欣怡佳琪涵萱雨诗梦悦思可欢彤瑶妍若汐语桐安爱晓子一诺梓月",
}


class Name:
    """A person's name in Han characters and in pinyin."""

    __slots__ = ("family", "given")

    def __init__(self, family: str, given: str) -> None:
        self.family = family
        self.given = given

    @property
    def text(self) -> str:
        return self.family + self.given

    @property
    def family_pinyin(self) -> str:
        return SURNAMES[self.family][0]

    @property
    def given_pinyin(self) -> str:
        return pinyin_of(self.given)

    @property
    def pinyin_text(self) -> str:
        return f"{self.family_pinyin} {self.given_pinyin}"


def pinyin_of(given: str) -> str:
    """``"建国"`` -> ``"Jianguo"``; ``"一安"`` -> ``"Yi'an"`` (GB/T 28039 §5.1, §6.2)."""
    out = ""
    for i, ch in enumerate(given):
        syl = PINYIN[ch]
        if i and syl[0] in "aoe":
            out += "'"
        out += syl
    return out[:1].upper() + out[1:]


def pick_surname(rng: random.Random) -> str:
    names = list(SURNAMES)
    return rng.choices(names, weights=[SURNAMES[n][1] for n in names])[0]


def pick_given(rng: random.Random, birth_year: int, female: bool) -> str:
    era = 0 if birth_year < 1960 else 1 if birth_year < 1990 else 2
    pool = _POOLS[(era, female)]
    single = rng.random() < (0.35 if era == 0 else 0.25 if era == 1 else 0.12)
    if single:
        return rng.choice(pool)
    first = rng.choice(pool)
    second = rng.choice([c for c in pool if c != first])
    return first + second


def human_names(name: Name) -> list[dict[str, Any]]:
    """The two HumanName entries described in the module docstring."""
    return [
        {
            "extension": [
                {"url": EN_REPRESENTATION, "valueCode": "IDE"},
                {"url": LANGUAGE, "valueCode": "zh-CN"},
            ],
            "use": "official",
            "text": name.text,
            "family": name.family,
            "given": [name.given],
        },
        {
            "extension": [
                {"url": EN_REPRESENTATION, "valueCode": "ABC"},
                {"url": LANGUAGE, "valueCode": "zh-Latn-pinyin"},
            ],
            "use": "official",
            "text": name.pinyin_text,
            "family": name.family_pinyin,
            "given": [name.given_pinyin],
        },
    ]
