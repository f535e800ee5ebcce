"""The patient's pages: records, access timeline, consent."""

WORDS: dict[str, dict[str, str]] = {
    "records.heading": {"en": "My records", "zh-CN": "我的健康记录"},
    "records.none": {"en": "No records.", "zh-CN": "暂无记录。"},
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
}
