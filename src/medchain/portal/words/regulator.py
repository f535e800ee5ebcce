"""The regulator's dashboard."""

WORDS: dict[str, dict[str, str]] = {
    "regulator.heading": {"en": "Supervision alerts", "zh-CN": "监管告警"},
    "regulator.none": {"en": "No alerts.", "zh-CN": "暂无告警。"},
    "regulator.note": {"en": "Note", "zh-CN": "备注"},
    "regulator.ack": {"en": "Acknowledge", "zh-CN": "确认"},
    "regulator.acked": {"en": "Acknowledged {alert}.", "zh-CN": "已确认 {alert}。"},
    "regulator.nav.stream": {"en": "Relayed streams", "zh-CN": "中继数据流"},
    "regulator.nav.charts": {"en": "Charts", "zh-CN": "统计图表"},
    "regulator.nav.exports": {"en": "Exports", "zh-CN": "导出"},
    "regulator.stream.heading": {"en": "Relayed streams", "zh-CN": "中继数据流"},
    "regulator.stream.intro": {
        "en": "Each business chain relayed to this regulator chain: how far it is relayed, "
        "how far the chain itself is (when this portal knows where its node is), and the "
        "heights not relayed.",
        "zh-CN": "中继到本监管链的每条业务链：已中继到的高度、业务链自身的高度"
        "（本门户知道其节点地址时），以及尚未中继的高度。",
    },
    "regulator.stream.live": {
        "en": "Follow live (reloads every 5 seconds)",
        "zh-CN": "实时跟踪（每 5 秒刷新）",
    },
    "regulator.stream.live_on": {
        "en": "This page reloads every 5 seconds.",
        "zh-CN": "本页每 5 秒自动刷新。",
    },
    "regulator.stream.stop": {"en": "Stop reloading", "zh-CN": "停止刷新"},
    "regulator.stream.none": {
        "en": "No business chain is relayed to this chain yet.",
        "zh-CN": "尚无业务链中继到本链。",
    },
    "regulator.col.source": {"en": "Source chain", "zh-CN": "来源链"},
    "regulator.col.relayed": {"en": "Last relayed height", "zh-CN": "已中继高度"},
    "regulator.col.head": {"en": "Source's height", "zh-CN": "来源链高度"},
    "regulator.col.missing": {"en": "Missing heights", "zh-CN": "缺失高度"},
    "regulator.col.digests": {"en": "Digests", "zh-CN": "摘要数"},
    "regulator.col.block_time": {"en": "Last block time (UTC)", "zh-CN": "最新区块时间（UTC）"},
    "regulator.col.relayed_at": {"en": "Relayed at (UTC)", "zh-CN": "中继时间（UTC）"},
    "regulator.head_unknown": {"en": "unknown", "zh-CN": "未知"},
    "regulator.no_gap": {"en": "none", "zh-CN": "无"},
    "regulator.partial": {
        "en": "block {height}: {parts} parts relayed",
        "zh-CN": "区块 {height}：已中继 {parts} 部分",
    },
    "regulator.events.heading": {"en": "Recent relayed events", "zh-CN": "最近中继的事件"},
    "regulator.events.none": {"en": "No relayed events yet.", "zh-CN": "尚无中继事件。"},
    "regulator.col.subject": {"en": "Record / shipment", "zh-CN": "记录 / 运单"},
    "regulator.charts.heading": {"en": "Charts", "zh-CN": "统计图表"},
    "regulator.charts.intro": {
        "en": "Counted from the audit events relayed to this chain (the newest {window} "
        "heights of each source), by the business chain's block date (UTC). Each chart's "
        "table holds the same numbers.",
        "zh-CN": "依据中继到本链的审计事件统计（每条来源链最新 {window} 个高度），"
        "按业务链区块日期（UTC）计。每张图下的表格含相同数据。",
    },
    "regulator.charts.empty": {
        "en": "None of these events has been relayed yet.",
        "zh-CN": "尚未中继此类事件。",
    },
    "regulator.chart.accesses": {
        "en": "Accesses to each organisation's records per day",
        "zh-CN": "每日各机构记录被访问次数",
    },
    "regulator.chart.refusals": {
        "en": "Refused accesses per organisation per day",
        "zh-CN": "每日各机构被拒绝的访问",
    },
    "regulator.chart.break_glass": {
        "en": "Break-glass (emergency) accesses opened per day",
        "zh-CN": "每日开启的紧急访问（破窗）",
    },
    "regulator.chart.cold_chain": {
        "en": "Cold-chain excursions per day",
        "zh-CN": "每日冷链温度偏离",
    },
    "regulator.chart.recognition": {
        "en": "Prior-exam recognition rate per requesting organisation",
        "zh-CN": "各申请机构的检查结果互认率",
    },
    "regulator.data": {"en": "Data", "zh-CN": "数据"},
    "regulator.col.day": {"en": "Day (UTC)", "zh-CN": "日期（UTC）"},
    "regulator.col.organisation": {"en": "Organisation", "zh-CN": "机构"},
    "regulator.col.count": {"en": "Count", "zh-CN": "次数"},
    "regulator.col.excursions": {"en": "Excursions", "zh-CN": "偏离次数"},
    "regulator.col.units": {"en": "Units affected", "zh-CN": "受影响单位"},
    "regulator.col.accepted": {"en": "Accepted", "zh-CN": "采纳"},
    "regulator.col.declined": {"en": "Declined", "zh-CN": "未采纳"},
    "regulator.col.rate_percent": {"en": "Rate (%)", "zh-CN": "互认率（%）"},
    "regulator.exports.heading": {"en": "Exports", "zh-CN": "导出"},
    "regulator.exports.intro": {
        "en": "Downloads of what these pages show, read again with your key when you click.",
        "zh-CN": "下载本页面所示数据；点击时用您的密钥重新读取。",
    },
    "regulator.exports.alerts": {"en": "Supervision alerts", "zh-CN": "监管告警"},
    "regulator.col.download": {"en": "Download", "zh-CN": "下载"},
    "regulator.col.what": {"en": "What", "zh-CN": "内容"},
}
