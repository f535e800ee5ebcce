"""The portal's pages, one module per area. Each has `NAV` (its pages for the
navigation, the first the area's entry) and `register(app, portal)` (its routes)."""

from __future__ import annotations

from types import ModuleType

from medchain.portal.pages import admin, clinician, explorer, patient, regulator

AREAS: tuple[ModuleType, ...] = (patient, clinician, admin, regulator, explorer)
