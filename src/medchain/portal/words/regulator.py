"""The regulator's dashboard."""

WORDS: dict[str, dict[str, str]] = {
    "regulator.heading": {"en": "Supervision alerts", "zh-CN": "监管告警"},
    "regulator.none": {"en": "No alerts.", "zh-CN": "暂无告警。"},
    "regulator.note": {"en": "Note", "zh-CN": "备注"},
    "regulator.ack": {"en": "Acknowledge", "zh-CN": "确认"},
    "regulator.acked": {"en": "Acknowledged {alert}.", "zh-CN": "已确认 {alert}。"},
}
