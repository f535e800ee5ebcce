"""The hospital admin's pages."""

WORDS: dict[str, dict[str, str]] = {
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
}
