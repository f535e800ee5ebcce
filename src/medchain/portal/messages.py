"""The pages' words in English and Simplified Chinese: one catalogue, message id ->
text per language. A missing translation falls back to English, and a missing id
shows the id itself, so a gap is visible rather than a crash."""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("en", "zh-CN")
DEFAULT_LANGUAGE = "en"

CATALOGUE: dict[str, dict[str, str]] = {
    "app.title": {"en": "MedChain portal", "zh-CN": "MedChain 门户"},
    "app.skip": {"en": "Skip to content", "zh-CN": "跳到正文"},
    "app.signed_in_as": {"en": "Signed in as", "zh-CN": "当前身份"},
    "app.local_note": {
        "en": "This app runs on your computer and signs with your key; the key never leaves it.",
        "zh-CN": "本应用在您的电脑上运行并用您的密钥签名；密钥不会离开本机。",
    },
    "app.language": {"en": "Language", "zh-CN": "语言"},
    "nav.main": {"en": "Main", "zh-CN": "主导航"},
    "nav.home": {"en": "Home", "zh-CN": "首页"},
    "nav.records": {"en": "My records", "zh-CN": "我的记录"},
    "nav.timeline": {"en": "Access timeline", "zh-CN": "访问记录"},
    "nav.consent": {"en": "Consent", "zh-CN": "授权"},
    "nav.clinician": {"en": "Clinician", "zh-CN": "医生工作台"},
    "nav.admin": {"en": "Hospital admin", "zh-CN": "医院管理"},
    "nav.regulator": {"en": "Regulator", "zh-CN": "监管"},
    "nav.explorer": {"en": "Explorer", "zh-CN": "区块浏览"},
    "home.heading": {"en": "Welcome", "zh-CN": "欢迎"},
    "home.roles": {"en": "Your roles on the chain", "zh-CN": "您在链上的角色"},
    "home.org": {"en": "Organisation", "zh-CN": "机构"},
    "home.unregistered": {
        "en": "This key is not registered on the chain: there is nothing it may see.",
        "zh-CN": "此密钥未在链上注册：没有可查看的内容。",
    },
    "records.heading": {"en": "My records", "zh-CN": "我的健康记录"},
    "records.none": {"en": "No records.", "zh-CN": "暂无记录。"},
    "col.record": {"en": "Record", "zh-CN": "记录"},
    "col.type": {"en": "Type", "zh-CN": "类型"},
    "col.date": {"en": "Registered", "zh-CN": "登记时间"},
    "col.custodian": {"en": "Held by", "zh-CN": "保管机构"},
    "col.time": {"en": "Time (UTC)", "zh-CN": "时间（UTC）"},
    "col.event": {"en": "Event", "zh-CN": "事件"},
    "col.who": {"en": "Who", "zh-CN": "操作人"},
    "col.basis": {"en": "Basis / reason", "zh-CN": "依据 / 原因"},
    "col.outcome": {"en": "Outcome", "zh-CN": "结果"},
    "col.grant": {"en": "Grant", "zh-CN": "授权"},
    "col.to": {"en": "To", "zh-CN": "被授权方"},
    "col.purposes": {"en": "Purposes", "zh-CN": "用途"},
    "col.scope": {"en": "Scope", "zh-CN": "范围"},
    "col.until": {"en": "Until", "zh-CN": "有效期至"},
    "col.state": {"en": "State", "zh-CN": "状态"},
    "col.action": {"en": "Action", "zh-CN": "操作"},
    "col.height": {"en": "Height", "zh-CN": "高度"},
    "col.hash": {"en": "Hash", "zh-CN": "哈希"},
    "col.txs": {"en": "Transactions", "zh-CN": "交易"},
    "col.app_hash": {"en": "App hash", "zh-CN": "应用哈希"},
    "timeline.heading": {"en": "Who accessed my records", "zh-CN": "谁访问了我的记录"},
    "timeline.none": {"en": "No access yet.", "zh-CN": "暂无访问。"},
    "timeline.refused": {"en": "Refused", "zh-CN": "已拒绝"},
    "timeline.break_glass": {"en": "Emergency access", "zh-CN": "紧急访问"},
    "timeline.ok": {"en": "Allowed", "zh-CN": "已允许"},
    "consent.heading": {"en": "Consent", "zh-CN": "授权管理"},
    "consent.grant_heading": {"en": "Grant access", "zh-CN": "授予访问权限"},
    "consent.to_kind": {"en": "Grant to", "zh-CN": "授权对象类型"},
    "consent.kind_did": {"en": "A person (DID)", "zh-CN": "个人（DID）"},
    "consent.kind_org": {"en": "An organisation", "zh-CN": "机构"},
    "consent.kind_role": {"en": "A role", "zh-CN": "角色"},
    "consent.grantee": {
        "en": "Who (DID, organisation id or role)",
        "zh-CN": "对象（DID、机构编号或角色）",
    },
    "consent.types": {"en": "Record types (comma separated)", "zh-CN": "记录类型（逗号分隔）"},
    "consent.purpose": {"en": "Purpose", "zh-CN": "用途"},
    "consent.days": {"en": "Days it lasts", "zh-CN": "有效天数"},
    "consent.grant_button": {"en": "Grant", "zh-CN": "授权"},
    "consent.revoke_button": {"en": "Revoke", "zh-CN": "撤销"},
    "consent.granted": {
        "en": "Granted {grant}: in force from block {height}.",
        "zh-CN": "已授权 {grant}：自区块 {height} 起生效。",
    },
    "consent.revoked": {
        "en": "Revoked {grant} at block {height}: "
        "no record is released under it from the next block.",
        "zh-CN": "已在区块 {height} 撤销 {grant}：自下一区块起不再据此发放任何记录。",
    },
    "consent.none": {"en": "No grants.", "zh-CN": "暂无授权。"},
    "clinician.heading": {"en": "Clinician workspace", "zh-CN": "医生工作台"},
    "clinician.patient": {"en": "Patient DID", "zh-CN": "患者 DID"},
    "clinician.find": {"en": "Find records", "zh-CN": "查找记录"},
    "clinician.read": {"en": "Request and read", "zh-CN": "申请并查看"},
    "clinician.none": {
        "en": "No records of this patient that you may see.",
        "zh-CN": "没有您可以查看的该患者记录。",
    },
    "record.heading": {"en": "Record", "zh-CN": "记录"},
    "record.verified": {
        "en": "Decrypted on this computer; its hash matches the one registered on the chain; "
        "session {session} closed.",
        "zh-CN": "已在本机解密；其哈希与链上登记一致；会话 {session} 已关闭。",
    },
    "refused.heading": {"en": "Refused", "zh-CN": "已拒绝"},
    "admin.heading": {"en": "Hospital admin", "zh-CN": "医院管理"},
    "admin.add_heading": {"en": "Add a member", "zh-CN": "添加成员"},
    "admin.org": {"en": "Organisation id", "zh-CN": "机构编号"},
    "admin.public_key": {"en": "Their public key (hex)", "zh-CN": "其公钥（十六进制）"},
    "admin.roles": {"en": "Roles (comma separated)", "zh-CN": "角色（逗号分隔）"},
    "admin.name": {"en": "Name", "zh-CN": "姓名"},
    "admin.add_button": {"en": "Add member", "zh-CN": "添加成员"},
    "admin.added": {
        "en": "Added {did} with roles {roles}.",
        "zh-CN": "已添加 {did}，角色 {roles}。",
    },
    "regulator.heading": {"en": "Supervision alerts", "zh-CN": "监管告警"},
    "regulator.none": {"en": "No alerts.", "zh-CN": "暂无告警。"},
    "regulator.note": {"en": "Note", "zh-CN": "备注"},
    "regulator.ack": {"en": "Acknowledge", "zh-CN": "确认"},
    "regulator.acked": {"en": "Acknowledged {alert}.", "zh-CN": "已确认 {alert}。"},
    "explorer.heading": {"en": "Explorer", "zh-CN": "区块浏览"},
    "explorer.status": {"en": "Chain status", "zh-CN": "链状态"},
    "explorer.chain": {"en": "Chain id", "zh-CN": "链标识"},
    "explorer.engine": {"en": "Engine", "zh-CN": "共识引擎"},
    "explorer.blocks": {"en": "Recent blocks", "zh-CN": "最近区块"},
    "explorer.blocks_refused": {
        "en": "The node shows blocks to operators and regulators only.",
        "zh-CN": "节点仅向运维方和监管方展示区块。",
    },
    "explorer.verify_heading": {"en": "Verify a proof", "zh-CN": "验证证明"},
    "explorer.tx_or_key": {
        "en": "A transaction id or a state key",
        "zh-CN": "交易编号或状态键",
    },
    "explorer.verify": {"en": "Verify", "zh-CN": "验证"},
    "explorer.verified": {"en": "Verified", "zh-CN": "验证通过"},
    "explorer.not_verified": {"en": "Not verified", "zh-CN": "验证未通过"},
    "explorer.trust_note": {
        "en": "Checked on this computer against the app hash of block {height} "
        "as this node reports it.",
        "zh-CN": "已在本机对照该节点报告的区块 {height} 的应用哈希进行验证。",
    },
    "error.heading": {"en": "Not possible", "zh-CN": "无法完成"},
    "error.what_to_do": {"en": "What to do", "zh-CN": "建议"},
    "form.submit": {"en": "Submit", "zh-CN": "提交"},
    "fhir.value": {"en": "Value", "zh-CN": "结果值"},
    "fhir.range": {"en": "Reference range", "zh-CN": "参考范围"},
    "fhir.interpretation": {"en": "Interpretation", "zh-CN": "解读"},
    "fhir.status": {"en": "Status", "zh-CN": "状态"},
    "fhir.effective": {"en": "Date", "zh-CN": "日期"},
    "fhir.medication": {"en": "Medicine", "zh-CN": "药品"},
    "fhir.dosage": {"en": "Dosage", "zh-CN": "用法用量"},
    "fhir.quantity": {"en": "Quantity", "zh-CN": "数量"},
    "fhir.repeats": {"en": "Repeats allowed", "zh-CN": "可重复次数"},
    "fhir.supply": {"en": "Supply", "zh-CN": "供应天数"},
    "fhir.reason": {"en": "Reason", "zh-CN": "原因"},
    "fhir.note": {"en": "Note", "zh-CN": "备注"},
    "fhir.prescriber": {"en": "Prescriber", "zh-CN": "开方医生"},
    "fhir.authored": {"en": "Prescribed on", "zh-CN": "开方日期"},
    "fhir.conclusion": {"en": "Conclusion", "zh-CN": "结论"},
    "fhir.prescription": {"en": "Prescription", "zh-CN": "处方"},
    "login.heading": {"en": "Open the portal from its link", "zh-CN": "请通过启动链接打开门户"},
    "login.hint": {
        "en": "Open the link that `medchain portal` printed when it started; "
        "it signs you in to this browser.",
        "zh-CN": "请打开 `medchain portal` 启动时打印的链接，以在此浏览器中登录。",
    },
}


def language_of(value: str | None) -> str:
    """A supported language for a cookie or query value, else the default."""
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def translator(language: str) -> Callable[..., str]:
    """`t(id, **fields)` in `language`: the text, with `{field}`s filled in."""

    def t(message_id: str, **fields: object) -> str:
        texts = CATALOGUE.get(message_id)
        if texts is None:
            return message_id
        text = texts.get(language) or texts[DEFAULT_LANGUAGE]
        return text.format(**fields) if fields else text

    return t
