"""Medical devices: registration by UDI, installation, maintenance and faults, and
the procedures a device was used in (fault trace to lot and patients' records)."""

from medchain.contracts.devices.handler import DevicesHandler

__all__ = ["DevicesHandler"]
