"""A synthetic regional population with injected duplicates, for the EMPI benchmark and tests.

Patient: http://hl7.org/fhir/R4/patient.html . Deterministic: the same ``seed`` and ``n`` give the
same records, in the same order, in any process (no set or hash-order iteration).

**Citizens** live in households (one to four people: couples with different family names, as
women in China keep theirs; children with the father's; sometimes twins). Family names follow
their frequency in China (王 7 %, 李 7 %, 张 7 % ... polyphone and compound surnames included);
given names of one or two characters from Zipf-weighted pools, so 王伟 and 李娜 are common.
Each citizen has a valid citizen ID (GB 11643), a phone (children share a parent's), a household
address in Zhejiang, a health-card id and an insurance number.

**Records.** Every citizen has a *primary* record at one of the region's hospitals. About
``duplicate_rate`` of citizens also have a *duplicate* record at another hospital, with one to
three distortions: ``typo`` (a character replaced by a homophone, as pinyin input methods do, or
by a look-alike), ``swap`` (family and given name exchanged), ``pinyin`` (romanised instead of
characters), ``traditional`` (traditional characters), ``phone`` (new or missing), ``address``
(moved or missing), ``no-citizen-id``, ``birthdate`` (day/month transposed or one digit off).
Records carry the (hashed) citizen ID only about half the time, the health card and insurance
number less often; names, phones and addresses vary in format.

**Hard negatives.** Twins (same birth date, family name, address and phone; different given
name, often sharing a generation character), namesakes (a common name and the same birth year)
and household members are part of the population, and *newcomers* (``newcomer_rate`` of ``n``:
a twin, a namesake or a relative of an indexed citizen, with no record of their own yet) are
registrations that must not be linked to anyone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from ehr.empi.features import INSURANCE_SYSTEM
from ehr.empi.pinyin import VARIANTS, surname_syllables, syllables
from ehr.identifiers import HEALTH_CARD_SYSTEM, citizen_id_identifier, make_citizen_id, mrn_system

__all__ = [
    "SYNTH_KEY",
    "Citizen",
    "Population",
    "SynthRecord",
    "DISTORTIONS",
    "generate",
]

#: the HMAC key the synthetic citizen IDs are hashed with (not a secret: test data only)
SYNTH_KEY = b"synthetic-empi-benchmark-key"
DISTORTIONS = (
    "typo",
    "swap",
    "pinyin",
    "traditional",
    "phone",
    "address",
    "no-citizen-id",
    "birthdate",
)
_DISTORTION_WEIGHTS = (0.20, 0.08, 0.15, 0.05, 0.18, 0.15, 0.14, 0.05)
_HOSPITALS = tuple(f"hosp-{i:02d}" for i in range(1, 21))
_TODAY = date(2025, 1, 1)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# family names with their share (per cent) of the population of China
_SURNAMES = _words(
    "王7.1 李7.0 张6.7 刘5.4 陈4.5 杨3.1 黄2.2 赵2.0 吴2.0 周1.9 徐1.6 孙1.5 马1.3 朱1.3 胡1.2 "
    "郭1.2 何1.2 林1.1 高1.1 罗1.0 郑0.9 梁0.9 谢0.8 宋0.7 唐0.7 许0.7 韩0.6 冯0.6 邓0.6 曹0.6 "
    "彭0.6 曾0.6 肖0.6 田0.5 董0.5 袁0.5 潘0.5 于0.5 蒋0.5 蔡0.5 余0.5 杜0.5 叶0.4 程0.4 苏0.4 "
    "魏0.4 吕0.4 丁0.4 任0.4 沈0.4 姚0.4 卢0.4 姜0.4 崔0.3 钟0.3 谭0.3 陆0.3 汪0.3 范0.3 金0.3 "
    "石0.3 廖0.3 贾0.3 夏0.3 韦0.3 付0.3 方0.3 白0.3 邹0.3 孟0.3 熊0.3 秦0.3 邱0.3 江0.3 尹0.3 "
    "薛0.3 闫0.2 段0.2 雷0.2 侯0.2 龙0.2 史0.2 陶0.2 黎0.2 贺0.2 顾0.2 毛0.2 郝0.2 龚0.2 邵0.2 "
    "万0.2 钱0.2 严0.2 覃0.1 武0.2 戴0.2 莫0.1 孔0.1 向0.1 汤0.1 单0.05 区0.02 解0.03 仇0.03 "
    "朴0.03 欧阳0.05 司马0.01 诸葛0.01 上官0.01 查0.02 盖0.02"
)
_SURNAME_NAMES = tuple(s.rstrip("0123456789.") for s in _SURNAMES)
_SURNAME_WEIGHTS = tuple(float(s[len(n) :]) for s, n in zip(_SURNAMES, _SURNAME_NAMES, strict=True))

_MALE = (
    "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林欢阳建国峰亮成东文志海晨博"
    "瑞晓子轩然天佳一嘉思家泽睿航铭昊诚毅鸣洋振兴荣德祥伦锋昌春立民永忠金庆松义云新学发光胜"
    "福生卫彬翔宏朋坤琦岩恒"
)
_FEMALE = (
    "娜敏静丽艳娟霞芳燕玲婷秀英慧巧美雪琳晶颖倩洁萍红丹梅莉兰凤桂琴云莹欣怡悦佳思雨诗涵梦婉"
    "嘉可璐瑶月晨冰妍彤蕾薇露晓珊淑爱珍翠雅芬娇宁青菲璇婧雯琪瑾蓉"
)
# more name characters, so a typo can find a homophone of most characters
_EXTRA = (
    "玮炜维卫威薇唯巍蔚为薇章汪柳阳皇武伍许须旭续序叙林琳霖麟临淋凌玲铃苓翎伶灵岭明铭鸣名茗"
    "敏闵悯珉静晶菁婧靖竞境敬丽莉俐黎立力利励荔娟鹃涓隽军君钧筠峻俊骏浚珺杰洁捷婕颉结节涛韬"
    "陶桃焘强蔷墙磊蕾雷垒勇永泳咏涌华桦骅花超潮朝巢辉晖徽慧惠蕙会卉鹏朋芃彭飞菲斐妃霏非霞夏"
    "侠峡芳方坊昉舫访燕艳彦雁晏焱宴妍婷庭亭廷霆挺秀绣岫英瑛莺鹰樱缨颖影盈莹滢萍平坪苹屏凭"
    "红宏洪虹鸿泓弘梅美玫媚眉湄丹单聃兰岚澜蓝斓凤峰锋枫丰风沣琴勤芹秦沁钦云芸昀筠韵匀欣新馨"
    "心昕鑫怡宜仪逸奕艺弈悦月越岳跃钺佳嘉家珈迦思斯丝偲雨宇语羽禹玉诗施师石时涵寒韩含晗梦蒙"
    "萌孟婉宛琬菀嘉可柯珂璐路露鹭潞瑶遥尧姚晨辰宸臣冰兵彬斌滨宁凝柠泞雅亚娅晓小筱孝珊姗杉"
    "淑舒书姝爱艾瑷珍真桢臻翠萃璀芬纷汾娇姣蛟青清晴卿倩茜浩昊皓灏颢凯恺锴楷帅亮靓量东冬栋"
    "文雯闻纹志智至致治海国帅博波柏泊瑞睿锐蕊子紫梓天添田一依伊衣泽则择航杭沆诚成承城程毅"
    "义益翼亿振震臻兴星幸荣容蓉融榕德得祥翔详庠伦仑纶昌常畅松嵩颂民敏岷庆卿擎忠中仲金锦晋"
    "学雪光广胜圣盛福富甫生升笙卫彬坤昆琨琦奇琪祺岩炎言妍恒衡珩"
    "率隆珑泷焕环桓冉燃苒纯淳椿法珐纳那乔桥侨桐童瞳同照昭兆洲州舟荪笋玛码湖虎护皋膏洛骆落正政"
    "征泄协卸登灯草槽层元原园远源盘攀判度渡业页夜烨素速酥顶定鼎人仁忍审申深神料寥奏诹雄秋丘求"
    "引银印音断锻后厚候古固故谷茂猫矛冒公工宫功少哨代带黛岱墨默漠空控恐曲趋愁筹丑普浦鸥殴格歌"
    "哥尚商关观冠茶察差改该钙"
)
# look-alike characters (形近字) for typos that are not homophones
_LOOKALIKE_PAIRS = _words(
    "王玉 未末 己已 日曰 土士 大太 天夫 人入 木本 千干 午牛 晴睛 清请 明朋 杨扬 伟韦 峰锋 娟涓 "
    "丽莉 海梅 江汪 波泼 军车 兵丘 鸣呜 霞暇 辉挥 敏敬 静净 洋祥 玲铃 婷亭 颖领 建健 红虹 华花 "
    "宁宇 刚钢 杰木 萍苹 芳方 英央 桂娃 洁浩 倩情 晶品 琳淋 燕蒸 斌彬 凯岂 涛寿 鑫森 超起"
)
_DISTRICTS = {
    ("浙江省", "杭州市"): ("西湖区", "上城区", "拱墅区", "滨江区", "萧山区", "余杭区", "临平区",
                          "钱塘区", "富阳区", "临安区", "桐庐县", "淳安县", "建德市"),
    ("浙江省", "宁波市"): ("海曙区", "江北区", "北仑区", "镇海区", "鄞州区", "奉化区", "余姚市"),
    ("浙江省", "温州市"): ("鹿城区", "龙湾区", "瓯海区", "洞头区", "瑞安市", "乐清市"),
    ("浙江省", "绍兴市"): ("越城区", "柯桥区", "上虞区", "诸暨市", "嵊州市"),
}  # fmt: skip
_CITY_WEIGHTS = (0.7, 0.12, 0.1, 0.08)
_STREETS = _words(
    "文三路 文二路 文一路 天目山路 西溪路 莫干山路 延安路 中山路 解放路 庆春路 凤起路 体育场路 "
    "江南大道 滨盛路 江陵路 学院路 教工路 古墩路 紫金港路 余杭塘路 文化路 人民路 建设路 环城北路 "
    "湖墅南路 丽水路 上塘路 秋涛路 钱江路 望江路 南山路 北山街 曙光路 保俶路 黄龙路 杭海路"
)
_REGION_CODE = {"杭州市": "330106", "宁波市": "330203", "温州市": "330302", "绍兴市": "330602"}


@dataclass(frozen=True, slots=True)
class Citizen:
    """A synthetic person (the truth the benchmark checks against)."""

    cid: int
    family: str
    given: str
    sex: Literal["male", "female"]
    birth: date
    phone: str | None
    address: tuple[str, str, str, str]  # province, city, district, line
    citizen_id: str
    card: str
    insurance: str
    household: int
    #: why this citizen is a hard negative of another (``twin``/``namesake``/``relative``)
    hard_negative: str | None = None


@dataclass(frozen=True, slots=True)
class SynthRecord:
    rid: str
    citizen: int
    kind: Literal["primary", "duplicate", "newcomer"]
    patient: dict[str, Any]
    distortions: tuple[str, ...] = ()


@dataclass
class Population:
    citizens: list[Citizen] = field(default_factory=list)
    records: list[SynthRecord] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[SynthRecord]:
        return [r for r in self.records if r.kind == kind]


# ------------------------------------------------------------------------------ generation


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.citizens: list[Citizen] = []
        self.households: list[list[int]] = []
        self.phones_used: set[str] = set()
        self.male_w = [1 / (i + 1) ** 0.9 for i in range(len(_MALE))]
        self.female_w = [1 / (i + 1) ** 0.9 for i in range(len(_FEMALE))]
        self.homophones = _homophone_table()
        self.lookalikes: dict[str, str] = {}
        for pair in _LOOKALIKE_PAIRS:
            self.lookalikes[pair[0]] = pair[1]
            self.lookalikes.setdefault(pair[1], pair[0])
        self.traditional: dict[str, str] = {}
        for trad, simp in VARIANTS.items():
            self.traditional.setdefault(simp, trad)
        self.seq = 0
        self.mrn_next: dict[str, int] = {}
        self.ids_used: set[str] = set()
        self.indexed = 0  # citizens with a primary record (newcomers pick their kin there)

    # -- pieces of a person
    def surname(self) -> str:
        return self.rng.choices(_SURNAME_NAMES, _SURNAME_WEIGHTS)[0]

    def given_char(self, sex: str) -> str:
        if sex == "male":
            return self.rng.choices(_MALE, self.male_w)[0]
        return self.rng.choices(_FEMALE, self.female_w)[0]

    def given(self, sex: str, born: date) -> str:
        # single-character given names were common until the 1990s
        p_single = 0.45 if born.year < 1990 else 0.2
        if self.rng.random() < p_single:
            return self.given_char(sex)
        return self.given_char(sex) + self.given_char(sex)

    def phone(self) -> str:
        while True:
            p = f"1{self.rng.choice('3456789')}{self.rng.randrange(10**9):09d}"
            if p not in self.phones_used:
                self.phones_used.add(p)
                return p

    def address(self) -> tuple[str, str, str, str]:
        (province, city) = self.rng.choices(list(_DISTRICTS), _CITY_WEIGHTS)[0]
        district = self.rng.choice(_DISTRICTS[(province, city)])
        line = (
            f"{self.rng.choice(_STREETS)}{self.rng.randint(1, 999)}号"
            f"{self.rng.randint(1, 30)}幢{self.rng.randint(1, 6)}单元"
            f"{self.rng.randint(1, 33)}{self.rng.randint(1, 4):02d}室"
        )
        return province, city, district, line

    def birth(self, lo: int, hi: int) -> date:
        start = date(lo, 1, 1)
        return start + timedelta(days=self.rng.randrange((date(hi, 12, 31) - start).days))

    def person(
        self,
        *,
        family: str,
        sex: Literal["male", "female"],
        birth: date,
        phone: str | None,
        address: tuple[str, str, str, str],
        household: int,
        given: str | None = None,
        hard_negative: str | None = None,
    ) -> Citizen:
        cid = len(self.citizens)
        region = _REGION_CODE[address[1]]
        while True:  # citizen IDs are unique
            seq = self.rng.randrange(0, 500) * 2 + (1 if sex == "male" else 0)
            citizen_id = make_citizen_id(region, birth, seq, sex == "female")
            if citizen_id not in self.ids_used:
                self.ids_used.add(citizen_id)
                break
        if given is None:
            given = self.given(sex, birth)
        while not self.distinct_in_household(household, given):
            given = self.given(sex, birth)
        c = Citizen(
            cid=cid,
            family=family,
            given=given,
            sex=sex,
            birth=birth,
            phone=phone,
            address=address,
            citizen_id=citizen_id,
            card=f"HC{self.rng.randrange(16**12):012X}",
            insurance=f"{self.rng.randrange(10**11):011d}",
            household=household,
            hard_negative=hard_negative,
        )
        self.citizens.append(c)
        self.households[household].append(cid)
        return c

    def distinct_in_household(self, household: int, given: str) -> bool:
        """No two members of a household share a given name, in characters or in sound."""
        sound = syllables(given)
        for cid in self.households[household]:
            other = self.citizens[cid].given
            if other == given or syllables(other) == sound:
                return False
        return True

    def household(self) -> None:
        hid = len(self.households)
        self.households.append([])
        addr = self.address()
        size = self.rng.choices((1, 2, 3, 4), (0.25, 0.3, 0.3, 0.15))[0]
        sex1: Literal["male", "female"] = self.rng.choice(("male", "female"))
        first = self.adult(sex1, addr, hid)
        if size == 1:
            return
        sex2: Literal["male", "female"] = "female" if sex1 == "male" else "male"
        second = self.person(
            family=self.surname(),
            sex=sex2,
            birth=min(
                first.birth + timedelta(days=self.rng.randint(-2000, 2000)), date(2002, 12, 31)
            ),
            phone=self.phone(),
            address=addr,
            household=hid,
        )
        father = first if sex1 == "male" else second
        parent_born = max(first.birth, second.birth)  # children come after the younger is 22
        if parent_born.year + 22 > 2020:
            return
        children = size - 2
        twins = children == 2 and self.rng.random() < 0.25
        born = self.birth(parent_born.year + 22, min(2020, parent_born.year + 38))
        generation = self.given_char("male") if self.rng.random() < 0.5 else ""
        for k in range(children):
            sex_c: Literal["male", "female"] = self.rng.choice(("male", "female"))
            if k and not twins:
                born = born + timedelta(days=self.rng.randint(400, 3000))
                if born > _TODAY:
                    break
            given = None
            for _ in range(20 if generation else 0):  # siblings share a generation character
                candidate = generation + self.given_char(sex_c)
                if self.distinct_in_household(hid, candidate):
                    given = candidate
                    break
            self.person(
                family=father.family,
                sex=sex_c,
                birth=born,
                phone=(
                    self.rng.choice((first.phone, father.phone))
                    if born.year > 2008
                    else self.phone()
                ),
                address=addr,
                household=hid,
                given=given,
                hard_negative="twin" if twins and k else None,
            )

    def adult(
        self, sex: Literal["male", "female"], addr: tuple[str, str, str, str], hid: int
    ) -> Citizen:
        born = self.birth(1940, 2000)
        if self.citizens and self.rng.random() < 0.02:
            # a namesake: the name of a citizen with a common name, the same birth year
            other = self.common_named()
            if other is not None:
                born = self.birth(other.birth.year, other.birth.year)
                return self.person(
                    family=other.family, given=other.given, sex=other.sex, birth=born,
                    phone=self.phone(), address=addr, household=hid, hard_negative="namesake",
                )  # fmt: skip
        return self.person(
            family=self.surname(), sex=sex, birth=born, phone=self.phone(), address=addr,
            household=hid,
        )  # fmt: skip

    def common_named(self) -> Citizen | None:
        for _ in range(20):
            c = self.citizens[self.rng.randrange(len(self.citizens))]
            if len(c.given) == 1 and c.family in "王李张刘陈" and c.birth.year <= 2000:
                return c
        return None

    # -- records
    def mrn(self, hospital: str) -> str:
        """A medical record number, unique within the hospital."""
        n = self.mrn_next.get(hospital, 0) + self.rng.randint(1, 50)
        self.mrn_next[hospital] = n
        return f"{n:08d}"

    def next_rid(self) -> str:
        self.seq += 1
        return f"p{self.seq:07d}"

    def record(
        self,
        c: Citizen,
        kind: Literal["primary", "duplicate", "newcomer"],
        hospital: str,
        distortions: tuple[str, ...] = (),
    ) -> SynthRecord:
        rng = self.rng
        family, given = c.family, c.given
        if "typo" in distortions:
            family, given = self.typo(family, given)
        if "traditional" in distortions:
            family = "".join(self.traditional.get(ch, ch) for ch in family)
            given = "".join(self.traditional.get(ch, ch) for ch in given)
        if "swap" in distortions:
            names = [{"use": "official", "family": given, "given": [family]}]
        elif "pinyin" in distortions:
            names = [self.pinyin_name(family, given)]
        else:
            names = [self.han_name(family, given)]
            if rng.random() < 0.1:
                names.append({**self.pinyin_name(family, given), "use": "usual"})
        birth = c.birth.isoformat()
        if "birthdate" in distortions:
            birth = self.bad_date(c.birth)
        patient: dict[str, Any] = {"resourceType": "Patient", "name": names, "birthDate": birth}
        if not (kind == "duplicate" and rng.random() < 0.02):
            patient["gender"] = c.sex
        phone = c.phone
        if "phone" in distortions:
            phone = self.phone() if rng.random() < 0.7 else None
        elif rng.random() < 0.08:
            phone = None
        if phone:
            patient["telecom"] = [
                {"system": "phone", "value": self.phone_format(phone), "use": "mobile"}
            ]
        address: tuple[str, str, str, str] | None = c.address
        if "address" in distortions:
            address = self.address() if rng.random() < 0.7 else None
        elif rng.random() < 0.05:
            address = None
        if address:
            patient["address"] = [self.address_format(address)]
        ids: list[dict[str, Any]] = [
            {
                "use": "usual",
                "system": mrn_system(hospital),
                "value": self.mrn(hospital),
            }
        ]
        if "no-citizen-id" not in distortions and rng.random() < 0.5:
            ids.append(citizen_id_identifier(c.citizen_id, SYNTH_KEY, today=_TODAY))
        if rng.random() < 0.15:
            ids.append({"system": HEALTH_CARD_SYSTEM, "value": c.card})
        if rng.random() < 0.2:
            ids.append({"system": INSURANCE_SYSTEM, "value": c.insurance})
        patient["identifier"] = ids
        rid = self.next_rid()
        patient["id"] = rid
        return SynthRecord(rid, c.cid, kind, patient, distortions)

    def typo(self, family: str, given: str) -> tuple[str, str]:
        """One character replaced: by a homophone (a pinyin input method picking the wrong
        character) three times in four when there is one, else by a look-alike."""
        full = family + given
        # given-name characters are mistyped more often than the family name
        pos = (
            len(family) + self.rng.randrange(len(given)) if given and self.rng.random() < 0.8 else 0
        )
        ch = full[pos]
        sound = syllables(ch)
        homophones = [h for h in self.homophones.get(sound[0], ()) if h != ch] if sound else []
        lookalike = self.lookalikes.get(ch)
        if homophones and (lookalike is None or self.rng.random() < 0.75):
            new = self.rng.choice(homophones)
        elif lookalike is not None:
            new = lookalike
        else:
            return family, given
        full = full[:pos] + new + full[pos + 1 :]
        return full[: len(family)], full[len(family) :]

    def han_name(self, family: str, given: str) -> dict[str, Any]:
        style = self.rng.random()
        if style < 0.5:
            return {"use": "official", "text": family + given, "family": family, "given": [given]}
        if style < 0.8:
            return {"use": "official", "text": family + given}
        return {"use": "official", "family": family, "given": [given]}

    def pinyin_name(self, family: str, given: str) -> dict[str, Any]:
        fam = "".join(surname_syllables(family)).replace("v", "u").capitalize()
        giv = "".join(syllables(given)).replace("v", "u").capitalize()
        style = self.rng.random()
        if style < 0.35:
            return {"use": "official", "family": fam, "given": [giv]}
        if style < 0.65:
            return {"use": "official", "text": f"{fam.upper()} {giv}"}
        if style < 0.85:
            return {"use": "official", "text": f"{fam} {giv}"}
        return {"use": "official", "text": f"{giv} {fam}"}  # western order

    def bad_date(self, d: date) -> str:
        if d.day <= 12 and d.day != d.month:
            return f"{d.year:04d}-{d.day:02d}-{d.month:02d}"
        s = d.strftime("%Y%m%d")
        for _ in range(50):
            i = self.rng.choice((2, 3, 7))  # a decade, a year, a day digit
            t = s[:i] + str(self.rng.randrange(10)) + s[i + 1 :]
            try:
                nd = date(int(t[:4]), int(t[4:6]), int(t[6:]))
            except ValueError:
                continue
            if t != s and nd <= _TODAY:
                return nd.isoformat()
        return d.isoformat()

    def phone_format(self, p: str) -> str:
        style = self.rng.random()
        if style < 0.7:
            return p
        if style < 0.85:
            return f"+86 {p[:3]} {p[3:7]} {p[7:]}"
        return f"{p[:3]}-{p[3:7]}-{p[7:]}"

    def address_format(self, a: tuple[str, str, str, str]) -> dict[str, Any]:
        province, city, district, line = a
        if self.rng.random() < 0.15:
            line = line.replace("幢", "栋")
        style = self.rng.random()
        if style < 0.6:
            return {
                "use": "home",
                "state": province,
                "city": city,
                "district": district,
                "line": [line],
            }
        if style < 0.8:
            return {"use": "home", "text": province + city + district + line}
        return {
            "use": "home",
            "state": province.removesuffix("省"),
            "city": city.removesuffix("市"),
            "district": district,
            "line": [line],
        }

    def distortions(self) -> tuple[str, ...]:
        k = self.rng.choices((1, 2, 3), (0.5, 0.35, 0.15))[0]
        chosen: list[str] = []
        while len(chosen) < k:
            d = self.rng.choices(DISTORTIONS, _DISTORTION_WEIGHTS)[0]
            if d not in chosen and not ({d, *chosen} >= {"swap", "pinyin"}):
                chosen.append(d)
        return tuple(sorted(chosen, key=DISTORTIONS.index))

    def newcomer(self) -> Citizen:
        """A twin, namesake or relative of an existing citizen who has no record yet."""
        base = self.citizens[self.rng.randrange(self.indexed)]
        kind = self.rng.choices(("twin", "namesake", "relative"), (0.5, 0.3, 0.2))[0]
        sex: Literal["male", "female"] = self.rng.choice(("male", "female"))
        if kind == "namesake":
            other = self.common_named() or base
            hid = len(self.households)
            self.households.append([])
            return self.person(
                family=other.family, given=other.given, sex=other.sex,
                birth=self.birth(other.birth.year, other.birth.year), phone=self.phone(),
                address=self.address(), household=hid, hard_negative="namesake",
            )  # fmt: skip
        if kind == "twin":
            generation = base.given[0] if len(base.given) == 2 and self.rng.random() < 0.5 else ""
            given = base.given
            while not self.distinct_in_household(base.household, given):
                given = (
                    generation + self.given_char(sex) if generation else self.given(sex, base.birth)
                )
            return self.person(
                family=base.family, given=given, sex=sex, birth=base.birth, phone=base.phone,
                address=base.address, household=base.household, hard_negative="twin",
            )  # fmt: skip
        born = base.birth + timedelta(days=self.rng.choice((-1, 1)) * self.rng.randint(8000, 12000))
        born = min(born, _TODAY - timedelta(days=1))
        return self.person(
            family=base.family, sex=sex, birth=born, phone=base.phone, address=base.address,
            household=base.household, hard_negative="relative",
        )  # fmt: skip


def _homophone_table() -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    seen: set[str] = set()
    for ch in _MALE + _FEMALE + _EXTRA + "".join(_SURNAME_NAMES):
        if ch in seen:
            continue
        seen.add(ch)
        s = syllables(ch)
        if s:
            table.setdefault(s[0], []).append(ch)
    return table


def generate(
    n: int,
    *,
    seed: int = 0,
    duplicate_rate: float = 0.10,
    newcomer_rate: float = 0.02,
) -> Population:
    """``n`` citizens with one primary record each, duplicates for about ``duplicate_rate`` of
    them, and ``newcomer_rate * n`` newcomer registrations (hard negatives, not indexed)."""
    g = _Gen(seed)
    while len(g.citizens) < n:
        g.household()
    del g.citizens[n:]
    g.indexed = n
    pop = Population(citizens=g.citizens)
    primary_hospital: list[str] = []
    for c in pop.citizens:
        h = g.rng.choice(_HOSPITALS)
        primary_hospital.append(h)
        pop.records.append(g.record(c, "primary", h))
    for c in list(pop.citizens):
        if g.rng.random() >= duplicate_rate:
            continue
        copies = 1 if g.rng.random() < 0.85 else 2
        for _ in range(copies):
            h = g.rng.choice([x for x in _HOSPITALS if x != primary_hospital[c.cid]])
            pop.records.append(g.record(c, "duplicate", h, g.distortions()))
    for _ in range(int(n * newcomer_rate)):
        c = g.newcomer()  # appended to pop.citizens (the generator's list)
        pop.records.append(g.record(c, "newcomer", g.rng.choice(_HOSPITALS)))
    return pop
