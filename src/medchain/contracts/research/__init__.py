"""Federated research studies: cohorts under consent, rounds, contributions.

The handler is imported from `medchain.contracts.research.handler`, not from here:
the consent contract reads this package's model (a study grant names a study), and
importing the handler with the package would close a cycle through records.
"""
