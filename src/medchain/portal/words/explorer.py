"""The explorer."""

WORDS: dict[str, dict[str, str]] = {
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
}
