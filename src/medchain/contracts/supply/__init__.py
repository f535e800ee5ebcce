"""Drug and device traceability: GS1 units, EPCIS events, cold chain, recall."""

from medchain.contracts.supply.handler import SupplyHandler

__all__ = ["SupplyHandler"]
