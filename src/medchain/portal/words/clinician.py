"""The clinician's workspace (records, break-glass, prior exams, referrals) and the
rendered FHIR record."""

WORDS: dict[str, dict[str, str]] = {
    "clinician.heading": {"en": "Clinician workspace", "zh-CN": "医生工作台"},
    "clinician.patient": {"en": "Patient DID", "zh-CN": "患者 DID"},
    "clinician.find": {"en": "Find records", "zh-CN": "查找记录"},
    "clinician.read": {"en": "Request and read", "zh-CN": "申请并查看"},
    "clinician.none": {
        "en": "No records of this patient that you may see.",
        "zh-CN": "没有您可以查看的该患者记录。",
    },
    "clinician.nav_glass": {"en": "Break-glass", "zh-CN": "紧急访问"},
    "clinician.nav_exams": {"en": "Prior exams", "zh-CN": "检查互认"},
    "clinician.nav_referrals": {"en": "Referrals", "zh-CN": "转诊"},
    "clinician.etreat_note": {
        "en": "Emergency treatment (ETREAT): without the patient's consent, a read for this "
        "purpose is allowed only while a break-glass request of yours for this patient is "
        "approved and open; every read is audited and shown to the patient and the regulator.",
        "zh-CN": "紧急救治（ETREAT）：未经患者授权时，仅在您对该患者的紧急访问申请已获批准且"
        "仍在有效期内时才可按此目的查看；每次查看都会记入审计，并向患者和监管方显示。",
    },
    "glass.heading": {"en": "Break-glass: emergency access", "zh-CN": "紧急访问（破窗）"},
    "glass.intro": {
        "en": "When a patient cannot consent, ask for emergency access with a reason. Nothing "
        "opens until a second clinician of your hospital approves; the patient and the "
        "regulator see the request, the approval and every read.",
        "zh-CN": "当患者无法授权时，可说明理由申请紧急访问。须经本院另一位医生批准后才会开放；"
        "患者和监管方可以看到申请、批准以及每次查看。",
    },
    "glass.ask": {"en": "Ask for emergency access", "zh-CN": "申请紧急访问"},
    "glass.reason_label": {
        "en": "Reason (why the patient cannot consent and what you need)",
        "zh-CN": "理由（患者为何无法授权、需要哪些信息）",
    },
    "glass.ask_button": {"en": "Request emergency access", "zh-CN": "提交紧急访问申请"},
    "glass.waiting": {"en": "Waiting for your approval", "zh-CN": "待您批准"},
    "glass.none_waiting": {
        "en": "No request of your hospital is waiting for approval.",
        "zh-CN": "本院没有待批准的申请。",
    },
    "glass.mine": {"en": "Your requests", "zh-CN": "您的申请"},
    "glass.none_mine": {"en": "You have made no request.", "zh-CN": "您尚未提出申请。"},
    "glass.others": {"en": "Other requests you may see", "zh-CN": "您可查看的其他申请"},
    "glass.request": {"en": "Request", "zh-CN": "申请"},
    "glass.patient": {"en": "Patient", "zh-CN": "患者"},
    "glass.doctor": {"en": "Requested by", "zh-CN": "申请人"},
    "glass.reason": {"en": "Reason", "zh-CN": "理由"},
    "glass.pending": {"en": "Waiting for approval", "zh-CN": "待批准"},
    "glass.open_until": {"en": "Open until {until}", "zh-CN": "有效至 {until}"},
    "glass.expired": {"en": "Approved, now expired", "zh-CN": "已批准，已过期"},
    "glass.approved_by": {"en": "approved by", "zh-CN": "批准人"},
    "glass.approve": {"en": "Approve", "zh-CN": "批准"},
    "glass.read": {"en": "Read the records (ETREAT)", "zh-CN": "查看记录（紧急救治）"},
    "glass.requested": {
        "en": "Requested emergency access {request} in block {height}; it opens once a second "
        "clinician approves.",
        "zh-CN": "已在区块 {height} 提交紧急访问申请 {request}；待另一位医生批准后开放。",
    },
    "glass.approved": {
        "en": "Approved {request} in block {height}: the requester may read for emergency "
        "treatment for a limited time.",
        "zh-CN": "已在区块 {height} 批准 {request}：申请人可在限定时间内以紧急救治目的查看。",
    },
    "exams.heading": {"en": "Prior exams (mutual recognition)", "zh-CN": "检查结果互认"},
    "exams.intro": {
        "en": "Exams another hospital performed for this patient that you may read. The "
        "chain's rules (exam code, age of the result, the performer's accreditation) say "
        "which may be recognised instead of repeated; accept one, or decline it saying why.",
        "zh-CN": "其他医院为该患者做过、您有权查看的检查。链上规则（检查项目、结果时效、"
        "执行机构资质）决定哪些可以互认而无需重复；可以接受，或说明理由后不予互认。",
    },
    "exams.find": {"en": "Find prior exams", "zh-CN": "查找既往检查"},
    "exams.code": {"en": "Exam", "zh-CN": "检查项目"},
    "exams.performed": {"en": "Performed", "zh-CN": "检查时间"},
    "exams.performed_by": {"en": "Performed by", "zh-CN": "执行机构"},
    "exams.rule": {"en": "Recognition rule", "zh-CN": "互认规则"},
    "exams.eligible": {"en": "Recognisable", "zh-CN": "可互认"},
    "exams.not_eligible": {"en": "Not recognisable", "zh-CN": "不可互认"},
    "exams.note": {"en": "Note (optional)", "zh-CN": "备注（可选）"},
    "exams.accept": {"en": "Accept", "zh-CN": "接受"},
    "exams.why_repeat": {
        "en": "Why repeat it (5 to 500 characters)",
        "zh-CN": "重复检查的理由（5 至 500 字）",
    },
    "exams.decline": {"en": "Decline", "zh-CN": "不予互认"},
    "exams.none": {
        "en": "No prior exam of this patient that you may read.",
        "zh-CN": "没有您可查看的该患者既往检查。",
    },
    "exams.decisions": {"en": "Your decisions for this patient", "zh-CN": "您对该患者的互认决定"},
    "exams.no_decisions": {"en": "None yet.", "zh-CN": "暂无。"},
    "exams.accepted": {"en": "Accepted (not repeated)", "zh-CN": "已接受（未重复检查）"},
    "exams.declined": {"en": "Declined (repeated)", "zh-CN": "不予互认（重复检查）"},
    "exams.accept_done": {
        "en": "Accepted {record} in block {height}: it counts instead of a repeat.",
        "zh-CN": "已在区块 {height} 接受 {record}：以此代替重复检查。",
    },
    "exams.decline_done": {
        "en": "Declined {record} in block {height}; your reason is on the chain.",
        "zh-CN": "已在区块 {height} 对 {record} 不予互认；理由已记录上链。",
    },
    "referrals.heading": {"en": "Referrals", "zh-CN": "转诊"},
    "referrals.id": {"en": "Referral", "zh-CN": "转诊单"},
    "referrals.from": {"en": "From", "zh-CN": "转出"},
    "referrals.to": {"en": "To", "zh-CN": "转入"},
    "referrals.reason_code": {"en": "Reason (urgency)", "zh-CN": "原因（紧急程度）"},
    "referrals.package": {"en": "Records; service request", "zh-CN": "随附记录；服务申请"},
    "referrals.timeline_of": {"en": "Timeline of", "zh-CN": "时间线："},
    "referrals.timeline": {"en": "Timeline of {referral}", "zh-CN": "{referral} 的时间线"},
    "referrals.step": {"en": "Step", "zh-CN": "步骤"},
    "referrals.none": {"en": "No referrals you may see.", "zh-CN": "没有您可查看的转诊。"},
    "referrals.approve": {"en": "Approve", "zh-CN": "同意"},
    "referrals.decline": {"en": "Decline", "zh-CN": "拒绝"},
    "referrals.decline_reason": {"en": "Reason (optional)", "zh-CN": "理由（可选）"},
    "referrals.accept": {"en": "Accept the patient", "zh-CN": "接收患者"},
    "referrals.report": {"en": "Send report", "zh-CN": "发送报告"},
    "referrals.report_record": {"en": "Report record id", "zh-CN": "报告记录编号"},
    "referrals.refer": {"en": "Refer a patient", "zh-CN": "转诊患者"},
    "referrals.to_org": {"en": "To hospital (organisation id)", "zh-CN": "转入医院（机构编号）"},
    "referrals.to_doctor": {
        "en": "To doctor (DID, optional)",
        "zh-CN": "转入医生（DID，可选）",
    },
    "referrals.reason_code_label": {
        "en": "Reason code (system|code, e.g. ICD-10|I48.0)",
        "zh-CN": "原因编码（体系|编码，如 ICD-10|I48.0）",
    },
    "referrals.urgency": {"en": "Urgency", "zh-CN": "紧急程度"},
    "referrals.records": {
        "en": "Records to send (ids, comma separated)",
        "zh-CN": "随附记录（编号，逗号分隔）",
    },
    "referrals.service_request": {
        "en": "ServiceRequest record id",
        "zh-CN": "服务申请（ServiceRequest）记录编号",
    },
    "referrals.days": {"en": "Open for (days)", "zh-CN": "有效天数"},
    "referrals.refer_button": {"en": "Refer", "zh-CN": "提交转诊"},
    "referrals.sent": {
        "en": "Referral {referral} sent in block {height}; it waits for the patient's approval.",
        "zh-CN": "转诊 {referral} 已在区块 {height} 提交，等待患者同意。",
    },
    "referrals.approve_done": {
        "en": "Approved {referral} in block {height}: the receiving side may read the records "
        "sent with it until it expires or you revoke the grant.",
        "zh-CN": "已在区块 {height} 同意 {referral}：接收方可在到期或您撤销授权前查看随附记录。",
    },
    "referrals.decline_done": {
        "en": "Declined {referral} in block {height}; nothing was granted.",
        "zh-CN": "已在区块 {height} 拒绝 {referral}；未授予任何权限。",
    },
    "referrals.accept_done": {
        "en": "Accepted {referral} in block {height}.",
        "zh-CN": "已在区块 {height} 接收 {referral}。",
    },
    "referrals.report_done": {
        "en": "Report sent for {referral} in block {height}: the referring doctor may read it.",
        "zh-CN": "已在区块 {height} 为 {referral} 发送报告：转出医生可以查看。",
    },
    "clinician.list_purpose": {"en": "Read for (purpose)", "zh-CN": "查看目的"},
    "record.etreat": {
        "en": "Read for emergency treatment under your approved break-glass request: the "
        "patient and the regulator see this read.",
        "zh-CN": "依据已批准的紧急访问申请以紧急救治目的查看：患者和监管方可以看到此次查看。",
    },
    "record.heading": {"en": "Record", "zh-CN": "记录"},
    "record.verified": {
        "en": "Decrypted on this computer; its hash matches the one registered on the chain; "
        "session {session} closed.",
        "zh-CN": "已在本机解密；其哈希与链上登记一致；会话 {session} 已关闭。",
    },
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
}
