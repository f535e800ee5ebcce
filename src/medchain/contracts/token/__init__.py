"""The `token` system contract: a capped incentive token minted only by governed rules."""
