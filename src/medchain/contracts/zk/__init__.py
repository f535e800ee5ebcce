"""Zero-knowledge eligibility: accredited labs' commitments, verifiers' challenges,
patients' range proofs."""

from medchain.contracts.zk.handler import ZkHandler

__all__ = ["ZkHandler"]
