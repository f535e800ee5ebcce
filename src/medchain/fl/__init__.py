"""Federated learning between hospitals (issue 17): Flower apps, CKKS aggregation.

Only model parameters leave a hospital, encrypted with CKKS so the sponsor's
aggregator adds ciphertexts and never sees one hospital's update. The rounds are
plain files under a work directory (data in, round reports and model files out):
the seam where the chain side commits cohorts and records what was trained.

Layer: fl. Imports crypto (SM3) and exceptions only. Its modules import flwr,
tenseal, scikit-learn and numpy, which live in the second venv (.venv-fl): the
main venv imports only its pure-Python modules `features` (the study's feature
vocabulary, for `medchain fl prepare-round`) and `budget` (a study's ε as noise).
"""
