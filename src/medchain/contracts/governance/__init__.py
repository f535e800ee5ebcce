"""The `governance` system contract: weighted proposals and votes that change
consortium-wide settings (issue 19, point 1). The registry imports its handler
from `handler`; this package face stays empty so identity and consent can read
`governance.model` (the chain's governance mode) without an import cycle."""
