"""Texts of the login and consent pages in Simplified Chinese (default) and English, and plain
descriptions of SMART scopes for the consent page."""

from __future__ import annotations

from ehr.accounts import InvalidScope, parse_scope

__all__ = ["LANGS", "describe_scope", "pick_lang", "t"]

LANGS = ("zh-CN", "en")

TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "site": "区域健康档案",
        "login_title": "登录",
        "login_intro": "请登录以继续。",
        "username": "用户名",
        "password": "密码",
        "login": "登录",
        "invalid": "用户名或密码不正确。",
        "locked": "尝试次数过多，请 {minutes} 分钟后再试。",
        "witness_requester": "只有护士或医生可以请同事核对签名。",
        "witness_fields": "请填写核对人的用户名、密码和核对事项（不超过 {n} 个字符）。",
        "witness_not_staff": "核对人必须是本院的护士或医生。",
        "witness_self": "核对人不能是您本人：请另一名护士核对。",
        "csrf": "页面已过期，请重试。",
        "consent_title": "授权应用",
        "app_wants": "「{app}」请求以下权限：",
        "signed_in_as": "当前用户：{name}",
        "not_you": "不是您？退出登录",
        "patient": "患者",
        "pick_patient": "请选择患者",
        "pick_for_whom": "为谁办理（本人或您代办的家人）",
        "search_patient": "按姓名或证件号搜索患者",
        "search": "搜索",
        "no_patients": "未找到匹配的患者。",
        "must_pick": "请先选择一位患者。",
        "allow": "允许",
        "deny": "拒绝",
        "consent_note": "您可以随时撤销此授权。您的每一次访问都会被记录，您可以查看谁访问过您的档案。",
        "error_title": "无法完成授权",
        "signed_in": "您已登录。",
        "signed_out": "您已退出登录。",
        "logout_hint": "退出请求无效：缺少或无法验证 id_token_hint。",
        "logout_target": "退出后的跳转地址未登记给该应用。",
        "other_lang": "English",
    },
    "en": {
        "site": "Regional Health Record",
        "login_title": "Sign in",
        "login_intro": "Please sign in to continue.",
        "username": "User name",
        "password": "Password",
        "login": "Sign in",
        "invalid": "The user name or password is incorrect.",
        "locked": "Too many attempts. Please try again in {minutes} minutes.",
        "witness_requester": "Only a nurse or a doctor may ask a colleague to witness.",
        "witness_fields": "Give the witness's user name and password and what is witnessed (at most {n} characters).",
        "witness_not_staff": "The witness must be a nurse or a doctor of the hospital.",
        "witness_self": "You cannot witness your own act: ask another nurse.",
        "csrf": "This page has expired. Please try again.",
        "consent_title": "Authorize app",
        "app_wants": "“{app}” asks for these permissions:",
        "signed_in_as": "Signed in as {name}",
        "not_you": "Not you? Sign out",
        "patient": "Patient",
        "pick_patient": "Choose a patient",
        "pick_for_whom": "Who is this for (yourself or a family member you act for)",
        "search_patient": "Search patients by name or ID number",
        "search": "Search",
        "no_patients": "No matching patient found.",
        "must_pick": "Please choose a patient first.",
        "allow": "Allow",
        "deny": "Deny",
        "consent_note": "You can withdraw this permission at any time. Every access is recorded, "
        "and you can see who has looked at your record.",
        "error_title": "The authorization could not be completed",
        "signed_in": "You are signed in.",
        "signed_out": "You are signed out.",
        "logout_hint": "Invalid sign-out request: the id_token_hint is missing or cannot be verified.",
        "logout_target": "The post-logout redirect URI is not registered for this app.",
        "other_lang": "中文",
    },
}

TYPES: dict[str, tuple[str, str]] = {
    "*": ("全部健康记录", "health records (all kinds)"),
    "Patient": ("个人基本信息", "personal details"),
    "Observation": ("检查检验结果和体征", "test results and vital signs"),
    "Condition": ("诊断和健康问题", "diagnoses and health problems"),
    "AllergyIntolerance": ("过敏信息", "allergies"),
    "MedicationRequest": ("处方用药", "prescriptions"),
    "MedicationStatement": ("用药记录", "medications"),
    "Immunization": ("疫苗接种", "vaccinations"),
    "Encounter": ("就诊记录", "visits"),
    "Appointment": ("预约", "appointments"),
    "Slot": ("号源", "appointment slots"),
    "Schedule": ("排班", "schedules"),
    "Procedure": ("手术和操作", "procedures"),
    "DiagnosticReport": ("检查报告", "diagnostic reports"),
    "DocumentReference": ("病历文档", "clinical documents"),
    "CarePlan": ("诊疗计划", "care plans"),
    "Practitioner": ("医生信息", "practitioners"),
    "Organization": ("医疗机构", "organizations"),
    "AuditEvent": ("访问记录", "access log"),
    "Consent": ("授权同意书", "consents"),
}
VERBS = {
    "c": ("新建", "create"),
    "r": ("查看", "read"),
    "u": ("修改", "update"),
    "d": ("删除", "delete"),
    "s": ("搜索", "search"),
}
WHOSE = {
    "patient": ("所选患者的", "the selected patient's"),
    "user": ("您有权访问的", "accessible to you:"),
    "system": ("系统内所有", "all"),
}
OTHER = {
    "openid": ("确认您的身份", "confirm who you are"),
    "fhirUser": ("知道您在档案中的身份", "know who you are in the record"),
    "profile": ("查看您的姓名", "see your name"),
    "launch": ("获取当前就诊上下文", "receive the current visit context"),
    "launch/patient": ("知道当前患者", "know the current patient"),
    "launch/encounter": ("知道当前就诊", "know the current visit"),
    "offline_access": ("在您离线后仍保持访问（长期有效）", "keep access when you are offline"),
    "online_access": ("在您登录期间保持访问", "keep access while you are signed in"),
}


def t(lang: str, key: str, **values: str) -> str:
    text = TEXTS.get(lang, TEXTS["zh-CN"])[key]
    return text.format(**values) if values else text


def pick_lang(*candidates: str | None) -> str:
    """The first of ``candidates`` we speak (``en``, ``en-US`` -> en; ``zh*`` -> zh-CN)."""
    for c in candidates:
        if not c:
            continue
        for part in c.replace(",", " ").split():
            low = part.split(";")[0].lower()
            if low.startswith("en"):
                return "en"
            if low.startswith("zh"):
                return "zh-CN"
    return "zh-CN"


def describe_scope(name: str, lang: str, *, own: bool = False) -> str:
    """A plain-language description of one scope (``own``: said to the patient themself)."""
    i = 1 if lang == "en" else 0
    if name in OTHER:
        return OTHER[name][i]
    try:
        s = parse_scope(name)
    except InvalidScope:
        s = None
    if s is None:
        return name
    verbs = [VERBS[c][i] for c in "rscud" if c in s.interactions]
    what = TYPES.get(s.rtype, (s.rtype, s.rtype))[i]
    whose = ("您的", "your")[i] if own and s.context == "patient" else WHOSE[s.context][i]
    cond = f" ({', '.join(f'{k}={v}' for k, v in s.params)})" if s.params else ""
    if i:
        said = ", ".join(verbs[:-1]) + " and " + verbs[-1] if len(verbs) > 1 else verbs[0]
        return f"{said.capitalize()} {whose} {what}{cond}"
    return f"{'、'.join(verbs)}{whose}{what}{cond}"
