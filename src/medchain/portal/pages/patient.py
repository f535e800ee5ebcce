"""The patient's pages: my records, who accessed them, consent, guardians, erasure
with the custodian's purge receipt verified, the studies I joined, and my claims.

Each page shows what the node answers to the user's signed reads; an action is a
transaction signed with the user's key, which the chain accepts or refuses."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from medchain.edge.receipts import (
    ReceiptCheck,
    check_purge_receipt,
    fetch_purge_receipt,
)
from medchain.edge.requester import ExchangeFailed
from medchain.portal.core import (
    DAY_MS,
    MAX_DAYS,
    FormFields,
    NavEntry,
    Portal,
    Refused,
    items,
    refusal_of,
    words_for,
)
from medchain.sdk.client import ClientError

NAV: tuple[NavEntry, ...] = (
    ("/records", "nav.records"),
    ("/timeline", "nav.timeline"),
    ("/consent", "nav.consent"),
    ("/guardians", "nav.guardians"),
    ("/erasure", "nav.erasure"),
    ("/studies", "nav.studies"),
    ("/claims", "nav.claims"),
)
RECEIPT_WAIT_S = 10.0  # as long as `medchain records receipt` waits for the purge
PURPOSES = ("TREAT", "ETREAT", "HRESEARCH", "HPAYMT")


def is_break_glass(row: dict[str, Any]) -> bool:
    """An event of emergency access: a request, an approval, or a read on that basis."""
    attrs = row.get("attributes") or {}
    return "break_glass" in row["kind"] or attrs.get("basis") == "break_glass"


def is_refusal(row: dict[str, Any]) -> bool:
    """An access the chain refused (it is audited like one it allowed)."""
    return str(row["kind"]).endswith(".refused") or row.get("code", 0) != 0


def yuan(fen: int | None) -> str:
    """An amount in integer fen as yuan with two decimals (no float on the way)."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def grant_payload(patient: str, fields: dict[str, str], now_ms: int) -> dict[str, Any]:
    """A consent.grant from the grant form, for `patient` (the user or their ward)."""
    kind = fields.get("kind", "did")
    grantee = fields.get("grantee", "").strip()
    try:
        days = int(fields.get("days", "30"))
    except ValueError:
        raise Refused("BAD_FORM", "days must be a whole number", "e.g. 30") from None
    if kind not in ("did", "org", "role") or not grantee or not 1 <= days <= MAX_DAYS:
        raise Refused("BAD_FORM", "say who the grant is for", f"and for 1 to {MAX_DAYS} days")
    return {
        "patient": patient,
        "grantee_kind": kind,
        "grantee": grantee,
        "purposes": [fields.get("purpose", "TREAT")],
        "scope_types": items(fields.get("types", "")),
        "scope_records": [],
        "expires_ms": now_ms + days * DAY_MS,
    }


def register(app: FastAPI, portal: Portal) -> None:
    """The patient's routes."""
    node = portal.node

    def now_ms() -> int:
        """The time a new grant's expiry counts from: never before the last block."""
        return max(int(portal.read(node.block_time_ms)), int(time.time() * 1000))

    @app.get("/records", response_class=HTMLResponse)
    def records(request: Request) -> HTMLResponse:
        """The patient's records: type, registration date, which organisation holds it."""
        rows = portal.read(lambda: node.patient_records(portal.did))
        rows.sort(key=lambda r: (-int(r["created_time_ms"]), r["record_id"]))
        return portal.page(request, "records.html", records=rows)

    @app.get("/timeline", response_class=HTMLResponse)
    def timeline(request: Request) -> HTMLResponse:
        """Who accessed the patient's records and on what basis, newest first."""
        rows = portal.read(lambda: node.audit(0, 500, patient=portal.did))["events"]
        rows.reverse()
        return portal.page(
            request,
            "timeline.html",
            rows=rows,
            refused=is_refusal,
            break_glass=is_break_glass,
        )

    @app.get("/consent", response_class=HTMLResponse)
    def consent(request: Request) -> HTMLResponse:
        """The patient's grants, each with a revoke button, and the form for a new one.
        (No `done` from the query: the status line says only what a POST here signed.)"""
        grants = portal.read(lambda: node.grants(portal.did))
        return portal.page(request, "consent.html", grants=grants, done="")

    @app.post("/consent/grant", response_class=HTMLResponse)
    def grant(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign consent.grant, then show the grant list with what changed."""
        out = portal.send("consent", "grant", grant_payload(portal.did, fields, now_ms()))
        grant_id = out["events"][0]["attributes"]["grant_id"]
        grants = portal.read(lambda: node.grants(portal.did))
        done = words_for(request)("consent.granted", grant=grant_id, height=out["height"])
        return portal.page(request, "consent.html", grants=grants, done=done)

    @app.post("/consent/revoke", response_class=HTMLResponse)
    def revoke(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign consent.revoke; the page says from which block it holds."""
        grant_id = fields.get("grant_id", "")
        out = portal.send("consent", "revoke", {"grant_id": grant_id})
        grants = portal.read(lambda: node.grants(portal.did))
        done = words_for(request)("consent.revoked", grant=grant_id, height=out["height"])
        return portal.page(request, "consent.html", grants=grants, done=done)

    # -- guardians --------------------------------------------------------------------

    def guardians_page(request: Request, done: str = "") -> HTMLResponse:
        """My guardians (with Revoke), the delegate form, and the patients I act for."""
        mine = portal.read(lambda: node.get(f"/v1/patients/{portal.did}/guardians"))
        wards = portal.read(lambda: node.get(f"/v1/members/{portal.did}/wards"))
        return portal.page(
            request, "patient_guardians.html", guardians=mine, wards=wards, done=done
        )

    @app.get("/guardians", response_class=HTMLResponse)
    def guardians(request: Request) -> HTMLResponse:
        """Who may manage my consent, and whose consent I may manage."""
        return guardians_page(request)

    @app.post("/guardians/delegate", response_class=HTMLResponse)
    def delegate_guardian(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign consent.delegate_guardian: the guardian may grant and revoke for me."""
        guardian = fields.get("guardian", "").strip()
        if not guardian:
            raise Refused("BAD_FORM", "give the guardian's DID", "did:medchain:...")
        out = portal.send("consent", "delegate_guardian", {"guardian": guardian})
        done = words_for(request)("guardians.delegated", who=guardian, height=out["height"])
        return guardians_page(request, done)

    @app.post("/guardians/revoke", response_class=HTMLResponse)
    def revoke_guardian(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign consent.revoke_guardian: from the next block the guardian acts no more."""
        guardian = fields.get("guardian", "")
        out = portal.send("consent", "revoke_guardian", {"guardian": guardian})
        done = words_for(request)("guardians.revoked", who=guardian, height=out["height"])
        return guardians_page(request, done)

    def ward_page(request: Request, patient: str, done: str = "") -> HTMLResponse:
        """A ward's grants with Revoke, and a grant form on their behalf; Refused unless
        the chain names the user a guardian of `patient` (so a page never shows a
        stranger the grants that merely name them)."""
        wards = portal.read(lambda: node.get(f"/v1/members/{portal.did}/wards"))
        if patient not in {w["patient"] for w in wards}:
            raise Refused(
                "NOT_GUARDIAN",
                "you are not a guardian of this patient",
                "the patient names guardians on their Guardians page",
                403,
            )
        grants = portal.read(lambda: node.grants(patient))
        return portal.page(
            request,
            "patient_ward.html",
            patient=patient,
            grants=grants,
            done=done,
            purposes=PURPOSES,
        )

    @app.get("/guardians/ward", response_class=HTMLResponse)
    def ward(request: Request, patient: str = "") -> HTMLResponse:
        """Manage the consent of a patient I am guardian of."""
        return ward_page(request, patient)

    @app.post("/guardians/ward/grant", response_class=HTMLResponse)
    def ward_grant(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign consent.grant for the ward (the chain checks I am their guardian)."""
        patient = fields.get("patient", "")
        out = portal.send("consent", "grant", grant_payload(patient, fields, now_ms()))
        grant_id = out["events"][0]["attributes"]["grant_id"]
        done = words_for(request)("consent.granted", grant=grant_id, height=out["height"])
        return ward_page(request, patient, done)

    @app.post("/guardians/ward/revoke", response_class=HTMLResponse)
    def ward_revoke(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign consent.revoke of one of the ward's grants."""
        patient, grant_id = fields.get("patient", ""), fields.get("grant_id", "")
        out = portal.send("consent", "revoke", {"grant_id": grant_id})
        done = words_for(request)("consent.revoked", grant=grant_id, height=out["height"])
        return ward_page(request, patient, done)

    # -- erasure ----------------------------------------------------------------------

    @app.get("/erasure", response_class=HTMLResponse)
    def erasure(request: Request) -> HTMLResponse:
        """My records: active ones with an Erase form, erased ones with their receipt."""
        rows = portal.read(lambda: node.patient_records(portal.did))
        rows.sort(key=lambda r: r["record_id"])
        return portal.page(request, "patient_erasure.html", records=rows)

    def receipt_page(request: Request, record_id: str, done: str = "") -> HTMLResponse:
        """The custodian's purge receipt of an erased record of mine, checked here."""
        record = portal.read(lambda: node.record(record_id))
        if record["patient"] != portal.did or record["status"] != "erased":
            raise Refused(
                "NOT_ERASED",
                f"record {record_id} is not an erased record of yours",
                "erase it first on the Erasure page",
                409,
            )
        check: ReceiptCheck | None = None
        pending = ""
        try:
            receipt = fetch_purge_receipt(node, record_id, RECEIPT_WAIT_S)
            check = check_purge_receipt(node, record_id, receipt)
        except ExchangeFailed as e:
            pending = e.message
        except ClientError as e:
            raise refusal_of(e) from None
        return portal.page(
            request,
            "patient_receipt.html",
            record=record,
            check=check,
            pending=pending,
            done=done,
        )

    @app.get("/erasure/receipt", response_class=HTMLResponse)
    def erasure_receipt(request: Request, record: str = "") -> HTMLResponse:
        """Fetch and verify the purge receipt of one erased record."""
        return receipt_page(request, record)

    @app.post("/erasure/erase", response_class=HTMLResponse)
    def erase(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign records.erase (only with the confirmation box ticked), then fetch and
        verify the custodian's purge receipt."""
        record_id = fields.get("record_id", "")
        if fields.get("confirm") != "yes":
            raise Refused("BAD_FORM", "erasure cannot be undone", "tick the box to confirm")
        reason = fields.get("reason", "").strip()[:500] or "patient request"
        out = portal.send("records", "erase", {"record_id": record_id, "reason": reason})
        done = words_for(request)("erasure.erased", record=record_id, height=out["height"])
        return receipt_page(request, record_id, done)

    # -- research studies -------------------------------------------------------------

    def studies_page(request: Request, done: str = "") -> HTMLResponse:
        """The studies my grants name, with the study's title and status as the
        research contract holds them."""
        joined = [
            g for g in portal.read(lambda: node.grants(portal.did)) if g["grantee_kind"] == "study"
        ]
        studies: dict[str, dict[str, Any]] = {}
        for study_id in sorted({g["grantee"] for g in joined}):
            studies[study_id] = portal.read(partial(node.study, study_id))
        return portal.page(
            request, "patient_studies.html", joined=joined, studies=studies, done=done
        )

    @app.get("/studies", response_class=HTMLResponse)
    def my_studies(request: Request) -> HTMLResponse:
        """Research studies I joined by consent, each with a Leave button."""
        return studies_page(request)

    @app.post("/studies/leave", response_class=HTMLResponse)
    def leave_study(request: Request, fields: FormFields) -> HTMLResponse:
        """Leave a study: sign consent.revoke of the grant that joined it."""
        grant_id = fields.get("grant_id", "")
        out = portal.send("consent", "revoke", {"grant_id": grant_id})
        done = words_for(request)("studies.left", grant=grant_id, height=out["height"])
        return studies_page(request, done)

    # -- claims -----------------------------------------------------------------------

    @app.get("/claims", response_class=HTMLResponse)
    def claims(request: Request) -> HTMLResponse:
        """My insurance enrolments (from my audit trail: the claims contract keeps no
        list of them by patient), my claims with their adjudication, and settlements."""
        enrolments = [e for e in audit_of(portal, portal.did) if e["kind"] == "claims.enrolled"]
        rows = portal.read(lambda: node.get("/v1/claims", patient=portal.did))
        settled = [c for c in rows if c.get("payment")]
        return portal.page(
            request,
            "patient_claims.html",
            enrolments=enrolments,
            claims=rows,
            settled=settled,
            yuan=yuan,
        )


def audit_of(portal: Portal, patient: str) -> list[dict[str, Any]]:
    """Every audit event about `patient` the node shows this user, oldest first."""
    events: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = portal.read(partial(portal.node.audit, after, 1000, patient=patient))
        events += page["events"]
        after = page["next_after"]
    return events
