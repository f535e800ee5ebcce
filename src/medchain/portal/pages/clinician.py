"""The clinician's workspace: find a patient's records I may see, request and read."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from medchain.edge.requester import ExchangeFailed, fetch_record
from medchain.portal.core import FormFields, NavEntry, Portal, Refused, refusal_of
from medchain.portal.fhir_view import resource_view
from medchain.sdk.client import ClientError

NAV: tuple[NavEntry, ...] = (("/clinician", "nav.clinician"),)


def register(app: FastAPI, portal: Portal) -> None:
    """The clinician's routes."""
    node = portal.node

    @app.get("/clinician", response_class=HTMLResponse)
    def clinician(request: Request, patient: str = "") -> HTMLResponse:
        """A patient's records this clinician may see (the node leaves out the rest)."""
        rows = portal.read(lambda: node.patient_records(patient)) if patient else None
        return portal.page(request, "clinician.html", patient=patient, records=rows)

    @app.post("/clinician/read", response_class=HTMLResponse)
    def read_record(request: Request, fields: FormFields) -> HTMLResponse:
        """The whole exchange (request on chain, fetch from the custodian's edge,
        decrypt here, check the hash, acknowledge), then the record rendered."""
        record_id, purpose = fields.get("record_id", ""), fields.get("purpose", "TREAT")
        with portal.tx_lock:
            try:
                got = fetch_record(node, portal.key, record_id, purpose)
            except (ExchangeFailed, ClientError) as e:
                raise refusal_of(e) from None
        try:
            resource = json.loads(got.plaintext)
        except ValueError:
            raise Refused("NOT_FHIR", "the record is not FHIR JSON", "", 422) from None
        return portal.page(
            request,
            "record.html",
            record_id=record_id,
            session_id=got.session_id,
            view=resource_view(resource if isinstance(resource, dict) else {}),
        )
