"""Chinese names as text: character variants, surnames, and toneless pinyin.

Hanyu Pinyin (GB/T 16159-2012, 汉语拼音正词法基本规则: the family name is written first and
apart from the given name, ``Zhang Xiaoming``); Patient.name: http://hl7.org/fhir/R4/datatypes.html#HumanName

- :func:`fold_variants` maps traditional and common variant characters to the simplified form
  (陳偉 -> 陈伟) with a small table of characters that occur in names. It is not a full
  traditional->simplified converter (OpenCC is); names are what matters here.
- :func:`surname_syllables` reads a family name with the surname reading of polyphone
  characters (单 Shan, 曾 Zeng, 区 Ou, 解 Xie, 仇 Qiu, 朴 Piao ...); :func:`syllables` reads a given
  name character by character with pypinyin's most common reading.
- :func:`readings` gives every reading of a character (pypinyin heteronyms), so a name a clerk
  typed in pinyin matches whichever reading they chose.
- Pinyin is compared toneless, lower case, with ``ü`` folded to ``u`` (``Lü``, ``Lv``, ``Lyu``
  and ``Lu`` all become ``lu``): passports and hospital systems disagree on how to write it.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from pypinyin import Style, pinyin

__all__ = [
    "COMPOUND_SURNAMES",
    "VARIANTS",
    "SURNAME_READINGS",
    "fold_variants",
    "is_han",
    "normalize_syllable",
    "readings",
    "segment_pinyin",
    "split_han_name",
    "surname_syllables",
    "syllables",
    "latin_fold",
]

#: surname readings of polyphone characters, and the compound surnames (复姓) with their reading
SURNAME_READINGS: dict[str, tuple[str, ...]] = {
    "单": ("shan",), "曾": ("zeng",), "区": ("ou",), "解": ("xie",), "仇": ("qiu",),
    "朴": ("piao",), "查": ("zha",), "盖": ("ge",), "覃": ("qin",), "尉": ("yu",),
    "缪": ("miao",), "种": ("chong",), "秘": ("bi",), "乐": ("yue",), "薄": ("bo",),
    "翟": ("zhai",), "员": ("yun",), "隗": ("kui",), "召": ("shao",), "繁": ("po",),
    "黑": ("he",), "宿": ("su",), "折": ("she",), "句": ("gou",), "长": ("chang",),
    "华": ("hua",), "纪": ("ji",), "褚": ("chu",), "沈": ("shen",), "石": ("shi",),
    "过": ("guo",), "能": ("nai",), "阚": ("kan",), "蔚": ("yu",), "汤": ("tang",),
    "柏": ("bai",), "藏": ("zang",), "万": ("wan",), "莘": ("shen",), "臧": ("zang",),
    "欧阳": ("ou", "yang"), "司马": ("si", "ma"), "诸葛": ("zhu", "ge"), "上官": ("shang", "guan"),
    "东方": ("dong", "fang"), "皇甫": ("huang", "fu"), "尉迟": ("yu", "chi"),
    "公孙": ("gong", "sun"), "慕容": ("mu", "rong"), "令狐": ("ling", "hu"),
    "夏侯": ("xia", "hou"), "司徒": ("si", "tu"), "端木": ("duan", "mu"),
    "轩辕": ("xuan", "yuan"), "长孙": ("zhang", "sun"), "宇文": ("yu", "wen"),
    "澹台": ("tan", "tai"), "闻人": ("wen", "ren"), "独孤": ("du", "gu"), "南宫": ("nan", "gong"),
    "西门": ("xi", "men"), "百里": ("bai", "li"), "呼延": ("hu", "yan"), "万俟": ("mo", "qi"),
    "单于": ("chan", "yu"), "申屠": ("shen", "tu"), "公冶": ("gong", "ye"), "太史": ("tai", "shi"),
    "司空": ("si", "kong"), "钟离": ("zhong", "li"), "赫连": ("he", "lian"), "拓跋": ("tuo", "ba"),
}  # fmt: skip

#: compound surnames, longest first is not needed: all are two characters
COMPOUND_SURNAMES = frozenset(k for k in SURNAME_READINGS if len(k) == 2)

#: traditional / variant -> simplified, for characters that occur in names (surnames first)
_VARIANT_PAIRS = (
    "張张 陳陈 劉刘 黃黄 吳吴 趙赵 楊杨 孫孙 馬马 鄭郑 謝谢 許许 韓韩 馮冯 鄧邓 蕭萧 葉叶 呂吕 "
    "蘇苏 盧卢 蔣蒋 賈贾 閻阎 錢钱 湯汤 陸陆 龔龚 萬万 嚴严 鍾钟 鐘钟 譚谭 鄒邹 顧顾 範范 魯鲁 "
    "齊齐 鄔邬 賀贺 龍龙 聶聂 羅罗 鄺邝 關关 歐欧 區区 單单 莊庄 閆闫 閔闵 週周 鄉乡 貝贝 "
    "費费 鄔邬 廬庐 藍蓝 濮濮 塗涂 凃涂 黎黎 樂乐 喬乔 殷殷 蘆芦 紀纪 歸归 衛卫 溫温 龐庞 "
    "鮑鲍 韋韦 雲云 習习 華华 盛盛 餘余 戚戚 倪倪 鄂鄂 麥麦 農农 寧宁 甯宁 闞阚 隨随 駱骆 "
    "偉伟 國国 軍军 東东 紅红 麗丽 靜静 濤涛 強强 彊强 傑杰 鵬鹏 飛飞 鳳凤 蘭兰 蓮莲 豔艳 艷艳 "
    "輝辉 勝胜 寶宝 貴贵 義义 榮荣 興兴 傳传 學学 廣广 慶庆 綠绿 剛刚 儀仪 楓枫 嬌娇 穎颖 "
    "瑩莹 彥彦 暉晖 韻韵 鳴鸣 賢贤 銘铭 錦锦 嶺岭 爾尔 愛爱 歡欢 語语 詩诗 夢梦 雙双 瑋玮 "
    "紹绍 維维 鋒锋 釗钊 銳锐 濱滨 漢汉 懷怀 蕓芸 鴻鸿 麗丽 娛娱 悅悦 書书 長长 門门 開开 "
    "鵬鹏 順顺 傑杰 潔洁 勳勋 勛勋 瓊琼 瑤瑶 璽玺 燦灿 煒炜 熾炽 韜韬 憲宪 嘯啸 驍骁 驊骅 "
    "騰腾 鑫鑫 鐵铁 銀银 鋼钢 聖圣 濟济 滬沪 發发 髮发 財财 祿禄 壽寿 蓉蓉 婭娅 嬋婵 鸞鸾 "
    "鶯莺 鸝鹂 鶴鹤 燕燕 霞霞 雪雪 倫伦 論论 議议 詠咏 誠诚 謙谦 讓让 進进 遠远 達达 運运 "
    "連连 邁迈 選选 適适 環环 瓏珑 親亲 覺觉 觀观 現现 貞贞 賓宾 寬宽 實实 審审 寫写 憶忆 "
    "懿懿 權权 樹树 棟栋 楨桢 樺桦 標标 機机 極极 檢检 歷历 曆历 氣气 潤润 澤泽 瀾澜 灣湾 "
    "無无 熱热 燈灯 營营 獻献 環环 產产 畢毕 異异 盡尽 碩硕 礎础 禮礼 稱称 穩稳 筆笔 範范 "
    "簡简 絲丝 紀纪 純纯 紡纺 細细 終终 統统 經经 網网 緒绪 緣缘 編编 練练 縣县 總总 績绩 "
    "繼继 續续 聯联 聲声 職职 肅肃 藝艺 蘊蕴 虎虎 號号 蟬蝉 術术 複复 覽览 訓训 記记 設设 "
    "詠咏 誼谊 調调 談谈 諾诺 謀谋 護护 豐丰 貞贞 負负 貫贯 資资 賜赐 賞赏 質质 贊赞 躍跃 "
    "輕轻 輪轮 轉转 辦办 邊边 鄰邻 釋释 鈞钧 鈴铃 鉅钜 銓铨 鋆鋆 錫锡 鎮镇 鏡镜 鑒鉴 閃闪 "
    "閣阁 闊阔 陽阳 際际 隱隐 雋隽 雞鸡 離离 難难 電电 靈灵 韌韧 頂顶 項项 順顺 頌颂 頤颐 "
    "頻频 題题 顏颜 願愿 顯显 風风 颯飒 飄飘 館馆 駿骏 騏骐 驗验 體体 鬆松 魁魁 鮮鲜 鳥鸟 "
    "鴿鸽 鵑鹃 麒麒 麟麟 齡龄 "
    # common variant forms (异体字) seen in registration systems
    "峯峰 淸清 羣群 裏里 堃坤 喆哲 昇升 煕熙 邨村 栢柏 徳德 眞真 靑青 晧皓 姫姬 冨富 凉凉 "
    "秊年 縂总 脩修 甦苏 蔴麻 菓果 畧略 廸迪 逰游 犇奔 囯国 囻国"
)
VARIANTS: dict[str, str] = {
    pair[0]: pair[1] for pair in _VARIANT_PAIRS.split() if len(pair) == 2 and pair[0] != pair[1]
}


def fold_variants(text: str) -> str:
    """Traditional and variant characters to simplified: ``陳偉`` -> ``陈伟``."""
    return "".join(VARIANTS.get(ch, ch) for ch in text)


def is_han(ch: str) -> bool:
    """A CJK unified ideograph (basic block and extensions A-G, compatibility ideographs)."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x3134F
        or 0xF900 <= cp <= 0xFAFF
    )


def split_han_name(text: str) -> tuple[str, str]:
    """``"欧阳娜娜"`` -> ``("欧阳", "娜娜")``; ``"张伟"`` -> ``("张", "伟")``; family name first.

    A two-character name is always surname + given (``"司马"`` alone is read as 司 + 马).
    """
    if len(text) > 2 and text[:2] in COMPOUND_SURNAMES:
        return text[:2], text[2:]
    return text[:1], text[1:]


def normalize_syllable(s: str) -> str:
    """Fold the ways of writing ``ü``: ``lv``/``lyu``/``lü`` -> ``lu``, ``nve`` -> ``nue``."""
    s = s.replace("ü", "u").replace("v", "u")
    if s.startswith(("lyu", "nyu")):
        s = s[0] + s[2:]
    return s


@lru_cache(maxsize=65536)
def readings(ch: str) -> tuple[str, ...]:
    """Every toneless reading of one character, the most common first (``"乐"`` -> le, yue)."""
    found = pinyin(ch, style=Style.NORMAL, heteronym=True, errors="ignore")
    if not found:
        return ()
    out: list[str] = []
    for r in found[0]:
        n = normalize_syllable(r)
        if n and n.isascii() and n.isalpha() and n not in out:
            out.append(n)
    return tuple(out)


def syllables(text: str) -> tuple[str, ...]:
    """Most common reading of each Han character (non-Han characters are skipped)."""
    out: list[str] = []
    for ch in text:
        r = readings(ch)
        if r:
            out.append(r[0])
    return tuple(out)


def surname_syllables(family: str) -> tuple[str, ...]:
    """A family name read as a surname: ``"单"`` -> ``("shan",)``, ``"欧阳"`` -> ou, yang."""
    known = SURNAME_READINGS.get(family)
    if known is not None:
        return known
    return syllables(family)


def latin_fold(text: str) -> str:
    """Lower-case ASCII letters only: tone marks dropped, ``ü`` kept as ``v`` (later ``u``)."""
    text = text.replace("ü", "v").replace("Ü", "v")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed.lower() if "a" <= c <= "z")


@lru_cache(maxsize=1)
def _inventory() -> frozenset[str]:
    from pypinyin.pinyin_dict import pinyin_dict

    found: set[str] = set()
    for value in pinyin_dict.values():
        for r in value.split(","):
            decomposed = unicodedata.normalize("NFKD", r.replace("ü", "v"))
            plain = "".join(c for c in decomposed if c.isascii() and c.isalpha())
            if plain:
                found.add(normalize_syllable(plain))
    # spellings that only occur in romanised names
    found.update({"lyu", "nyu", "lv", "nv"})
    return frozenset(found)


@lru_cache(maxsize=65536)
def segment_pinyin(word: str) -> tuple[str, ...] | None:
    """Split run-together pinyin into syllables: ``"xiaoming"`` -> xiao, ming; ``None`` if it is
    not pinyin. Prefers fewer syllables (``"xian"`` is 先, not xi'an) as names are written."""
    word = latin_fold(word)
    if not word:
        return None
    inv = _inventory()
    n = len(word)
    best: list[tuple[str, ...] | None] = [None] * (n + 1)
    best[0] = ()
    for i in range(n):
        prefix = best[i]
        if prefix is None:
            continue
        for j in range(min(n, i + 6), i, -1):
            piece = word[i:j]
            if piece in inv:
                cand = (*prefix, normalize_syllable(piece))
                cur = best[j]
                if cur is None or len(cand) < len(cur):
                    best[j] = cand
    return best[n]
