"""The explorer."""

WORDS: dict[str, dict[str, str]] = {
    "nav.explorer_blocks": {"en": "Blocks", "zh-CN": "区块"},
    "nav.explorer_validators": {"en": "Validators", "zh-CN": "验证者"},
    "explorer.heading": {"en": "Explorer", "zh-CN": "区块浏览"},
    "explorer.status": {"en": "Chain status", "zh-CN": "链状态"},
    "explorer.chain": {"en": "Chain id", "zh-CN": "链标识"},
    "explorer.engine": {"en": "Engine", "zh-CN": "共识引擎"},
    "explorer.blocks": {"en": "Recent blocks", "zh-CN": "最近区块"},
    "explorer.all_blocks": {"en": "All blocks", "zh-CN": "全部区块"},
    "explorer.blocks_refused": {
        "en": "The node shows blocks to operators and regulators only.",
        "zh-CN": "节点仅向运维方和监管方展示区块。",
    },
    "explorer.txs_refused": {
        "en": "The node shows a block's transactions and results to operators and "
        "regulators only; headers and app hashes are public.",
        "zh-CN": "节点仅向运维方和监管方展示区块中的交易及结果；区块头和应用哈希是公开的。",
    },
    "explorer.no_blocks": {
        "en": "The node shows you no blocks.",
        "zh-CN": "节点未向您展示任何区块。",
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
    "explorer.self_note": {
        "en": "Checked on this computer only for consistency: no app hash to compare with.",
        "zh-CN": "仅在本机检查了证明的自洽性：没有可对照的应用哈希。",
    },
    "explorer.checked_note": {
        "en": "Checked on this computer against header {header}, signed by {signed} of "
        "{total} voting power, verified from the trust root.",
        "zh-CN": "已在本机对照区块头 {header} 验证；该区块头由 {total} 投票权中的 {signed} "
        "签名，并已从信任根验证。",
    },
    "explorer.root": {"en": "Trust root", "zh-CN": "信任根"},
    "explorer.root_given": {
        "en": "Given at launch: {root}.",
        "zh-CN": "启动时给定：{root}。",
    },
    "explorer.no_root": {
        "en": "None was given at launch (medchain portal --trust): proofs are compared with "
        "the app hash this node itself reports, which shows the node is consistent, "
        "not that it is honest.",
        "zh-CN": "启动时未给定（medchain portal --trust）：证明仅与该节点自己报告的应用哈希对照，"
        "只能说明节点自洽，不能说明节点诚实。",
    },
    "explorer.older": {"en": "Older blocks", "zh-CN": "更早的区块"},
    "explorer.newer": {"en": "Newer blocks", "zh-CN": "更新的区块"},
    "explorer.pages": {"en": "Block pages", "zh-CN": "区块分页"},
    "explorer.block": {"en": "Block {height}", "zh-CN": "区块 {height}"},
    "explorer.header": {"en": "Header", "zh-CN": "区块头"},
    "explorer.header_ok": {
        "en": "This app hash is vouched for by header {header}, signed by {signed} of {total} "
        "voting power, verified on this computer from the trust root.",
        "zh-CN": "该应用哈希由区块头 {header} 担保；该区块头由 {total} 投票权中的 {signed} 签名，"
        "已在本机从信任根验证。",
    },
    "explorer.header_bad": {
        "en": "The header could not be verified from the trust root",
        "zh-CN": "无法从信任根验证该区块头",
    },
    "explorer.header_unchecked": {
        "en": "Not checked: no trust root was given at launch.",
        "zh-CN": "未检查：启动时未给定信任根。",
    },
    "explorer.tx": {"en": "Transaction", "zh-CN": "交易"},
    "explorer.tx_status": {"en": "Status", "zh-CN": "状态"},
    "explorer.index": {"en": "Position in block", "zh-CN": "区块内序号"},
    "explorer.code": {"en": "Result code", "zh-CN": "结果代码"},
    "explorer.log": {"en": "Log", "zh-CN": "日志"},
    "explorer.events": {"en": "Events", "zh-CN": "事件"},
    "explorer.attributes": {"en": "Attributes", "zh-CN": "属性"},
    "explorer.events_refused": {
        "en": "The node shows a transaction's log and events only to those who may see "
        "every audit event in it.",
        "zh-CN": "节点仅向可查看其中全部审计事件的人展示交易的日志和事件。",
    },
    "explorer.validators": {"en": "Validators", "zh-CN": "验证者"},
    "explorer.validators_at": {
        "en": "The set that signed header {height}, as the node reports it.",
        "zh-CN": "签署区块头 {height} 的验证者集合（节点所报告）。",
    },
    "explorer.address": {"en": "Address", "zh-CN": "地址"},
    "explorer.pub_key": {"en": "Public key", "zh-CN": "公钥"},
    "explorer.power": {"en": "Voting power", "zh-CN": "投票权"},
    "explorer.total": {"en": "Total", "zh-CN": "合计"},
    "explorer.solo_signer": {
        "en": "A solo node has no validators: it makes every block and signs its headers "
        "with one key.",
        "zh-CN": "单节点链没有验证者：它产生所有区块，并用一把密钥签署区块头。",
    },
    "explorer.header_key": {"en": "Header key", "zh-CN": "区块头签名密钥"},
    "explorer.no_header_key": {
        "en": "This node signs no headers.",
        "zh-CN": "该节点不签署区块头。",
    },
    "explorer.time": {"en": "Time (UTC)", "zh-CN": "时间（UTC）"},
}
