"""The clinician's workspace and the rendered FHIR record."""

WORDS: dict[str, dict[str, str]] = {
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
