"""The clinician's workspace: find a patient's records I may see and read them;
break-glass requests and their approval; prior exams of other hospitals to accept
or decline (mutual recognition); referrals, on one page a patient also uses.

Every list is what the node answers to this key's signed reads, and every button
signs one transaction the contract checks again: the page offers an action only
to spare a click that would be refused, never to grant one.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from functools import partial
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from medchain.contracts.referral import payloads as referral_payloads
from medchain.contracts.referral.model import MAX_REFERRAL_MS, PHYSICIAN_ROLES, URGENCIES
from medchain.edge.requester import ExchangeFailed, fetch_record
from medchain.portal.core import (
    DAY_MS,
    FormFields,
    Me,
    NavEntry,
    Portal,
    Refused,
    items,
    refusal_of,
    words_for,
)
from medchain.portal.fhir_view import resource_view
from medchain.sdk.client import ClientError

NAV: tuple[NavEntry, ...] = (
    ("/clinician", "nav.clinician"),
    ("/clinician/break-glass", "clinician.nav_glass"),
    ("/clinician/exams", "clinician.nav_exams"),
    ("/referrals", "clinician.nav_referrals"),
)

READ_PURPOSES = ("TREAT", "ETREAT")  # ETREAT: what an approved break-glass request opens
RECOGNITION_EVENTS = ("recognition.accepted", "recognition.declined")
MAX_REFERRAL_DAYS = MAX_REFERRAL_MS // DAY_MS
REFERRAL_ID = re.compile(referral_payloads.REFERRAL_ID)
AUDIT_PAGE, AUDIT_PAGES = 1000, 20  # at most 20,000 of a doctor's acts per exams page


def segment(value: str) -> str:
    """One path segment of a node URL, whatever the user typed."""
    return quote(value, safe="")


def now_ms(portal: Portal) -> int:
    """The later of the chain's last block time and this computer's clock (an expiry
    set from a stale block time would be shorter than the user asked)."""
    return max(int(portal.read(portal.node.block_time_ms)), int(time.time() * 1000))


def is_physician(me: Me) -> bool:
    """Who may refer, accept and report (the referral contract's rule, checked again there)."""
    return bool(PHYSICIAN_ROLES & set(me.roles))


def register(app: FastAPI, portal: Portal) -> None:
    """The clinician's routes."""
    node = portal.node

    @app.get("/clinician", response_class=HTMLResponse)
    def clinician(request: Request, patient: str = "", purpose: str = "TREAT") -> HTMLResponse:
        """A patient's records this clinician may see for `purpose` (the node leaves out
        the rest); ETREAT lists what an approved break-glass request opens."""
        purpose = purpose if purpose in READ_PURPOSES else "TREAT"
        rows = portal.read(lambda: node.patient_records(patient, purpose)) if patient else None
        return portal.page(
            request, "clinician.html", patient=patient, records=rows, purpose=purpose
        )

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
            purpose=purpose,
            view=resource_view(resource if isinstance(resource, dict) else {}),
        )

    # -- break-glass ---------------------------------------------------------------

    def glass_page(request: Request, done: str = "") -> HTMLResponse:
        """My requests and those of my organisation I may approve, as the node shows them."""
        me = portal.me()
        answer = portal.read(lambda: node.get("/v1/consent/break-glass")) if me.registered else {}
        requests = list(answer.get("requests") or ())
        approver = bool(set(me.roles) & set(answer.get("approver_roles") or ()))
        requester = bool(set(me.roles) & set(answer.get("requester_roles") or ()))
        waiting = [
            r
            for r in requests
            if approver
            and r["status"] == "pending"
            and r["doctor"] != me.did
            and r["org_id"] == me.org_id
        ]
        mine = [r for r in requests if r["doctor"] == me.did]
        others = [r for r in requests if r not in waiting and r not in mine]
        return portal.page(
            request,
            "clinician_glass.html",
            me=me,
            waiting=waiting,
            mine=mine,
            others=others,
            approver=approver,
            requester=requester,
            now=now_ms(portal),
            done=done,
        )

    @app.get("/clinician/break-glass", response_class=HTMLResponse)
    def break_glass(request: Request) -> HTMLResponse:
        """Ask for emergency access; approve a colleague's request; see where each stands."""
        return glass_page(request)

    @app.post("/clinician/break-glass", response_class=HTMLResponse)
    def request_break_glass(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign consent.break_glass: nothing opens until a second clinician approves."""
        patient = fields.get("patient", "").strip()
        out = portal.send(
            "consent", "break_glass", {"patient": patient, "reason": fields.get("reason", "")}
        )
        request_id = out["events"][0]["attributes"]["request_id"]
        done = words_for(request)("glass.requested", request=request_id, height=out["height"])
        return glass_page(request, done)

    @app.post("/clinician/break-glass/approve", response_class=HTMLResponse)
    def approve_break_glass(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign consent.approve_break_glass: the requester may read for ETREAT for a while."""
        request_id = fields.get("request_id", "")
        out = portal.send("consent", "approve_break_glass", {"request_id": request_id})
        done = words_for(request)("glass.approved", request=request_id, height=out["height"])
        return glass_page(request, done)

    # -- mutual recognition of prior exams ------------------------------------------

    def own_acts(did: str) -> list[dict[str, Any]]:
        """This member's audited acts, oldest first, paged up to AUDIT_PAGES pages (a
        member may see their own acts; the node keeps no index by action)."""
        rows: list[dict[str, Any]] = []
        after = 0
        for _ in range(AUDIT_PAGES):
            page = portal.read(partial(node.audit, after, AUDIT_PAGE, actor=did))
            rows += page["events"]
            if page.get("next_after") is None:
                break
            after = int(page["next_after"])
        return rows

    def exams_page(request: Request, patient: str, done: str = "") -> HTMLResponse:
        """A patient's prior exams I may read, each with whether the chain's rules let
        me recognise it, and my own decisions on them (from the audit trail)."""
        me = portal.me()
        candidates = decisions = None
        if patient and me.registered:
            candidates = portal.read(lambda: node.recognition_candidates(patient, me.did))
            decisions = [
                r
                for r in reversed(own_acts(me.did))
                if r["kind"] in RECOGNITION_EVENTS
                and r.get("code", 0) == 0
                and r["attributes"].get("patient") == patient
            ]
        return portal.page(
            request,
            "clinician_exams.html",
            me=me,
            patient=patient,
            candidates=candidates,
            decisions=decisions,
            done=done,
        )

    @app.get("/clinician/exams", response_class=HTMLResponse)
    def exams(request: Request, patient: str = "") -> HTMLResponse:
        """Prior exams of another hospital for this patient, to accept or decline."""
        return exams_page(request, patient)

    @app.post("/clinician/exams/decide", response_class=HTMLResponse)
    def decide_exam(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign recognition.accept or recognition.decline (a decline must say why)."""
        action = fields.get("outcome", "")
        if action not in ("accept", "decline"):
            raise Refused("BAD_FORM", "accept or decline", "use the buttons of the exams page")
        record_id, reason = fields.get("record_id", ""), fields.get("reason", "")
        out = portal.send("recognition", action, {"record_id": record_id, "reason": reason})
        t = words_for(request)
        done = t(f"exams.{action}_done", record=record_id, height=out["height"])
        return exams_page(request, fields.get("patient", ""), done)

    # -- referrals ------------------------------------------------------------------

    def referrals_page(request: Request, show: str = "", done: str = "") -> HTMLResponse:
        """A patient's own referrals, or a physician's hospital's sent and received ones,
        as the node answers them; with one referral's timeline when asked."""
        me = portal.me()
        rows: list[dict[str, Any]] = []
        if me.registered and me.org_id:
            rows = portal.read(lambda: node.get("/v1/referrals", org=me.org_id))
        elif me.registered:
            rows = portal.read(lambda: node.get("/v1/referrals", patient=me.did))
        timeline = None
        if REFERRAL_ID.fullmatch(show):  # anything else could only echo back in a refusal
            timeline = portal.read(lambda: node.get(f"/v1/referrals/{segment(show)}/timeline"))
        rows.sort(key=lambda r: (-int(r["steps"][0]["height"]), r["referral_id"]))
        return portal.page(
            request,
            "clinician_referrals.html",
            me=me,
            referrals=rows,
            physician=is_physician(me),
            timeline=timeline,
            urgencies=URGENCIES,
            max_days=MAX_REFERRAL_DAYS,
            done=done,
        )

    @app.get("/referrals", response_class=HTMLResponse)
    def referrals(request: Request, show: str = "") -> HTMLResponse:
        """Referrals: refer, accept and report for physicians; approve or decline for
        the patient; `show` adds one referral's timeline (the node says who may see it)."""
        return referrals_page(request, show)

    @app.post("/referrals/refer", response_class=HTMLResponse)
    def refer(request: Request, fields: FormFields) -> HTMLResponse:
        """Sign referral.refer with the package and the ServiceRequest already registered."""
        try:
            days = int(fields.get("days", "14"))
        except ValueError:
            raise Refused("BAD_FORM", "days must be a whole number", "e.g. 14") from None
        if not 1 <= days <= MAX_REFERRAL_DAYS:
            raise Refused("BAD_FORM", f"a referral stays open 1 to {MAX_REFERRAL_DAYS} days")
        referral_id = "ref-" + secrets.token_hex(6)
        payload: dict[str, Any] = {
            "referral_id": referral_id,
            "patient": fields.get("patient", "").strip(),
            "to_org": fields.get("to_org", "").strip(),
            "reason_code": fields.get("reason_code", "").strip(),
            "urgency": fields.get("urgency", "routine"),
            "record_ids": items(fields.get("records", "")),
            "service_request_id": fields.get("service_request", "").strip(),
            "expires_ms": now_ms(portal) + days * DAY_MS,
        }
        if fields.get("to_doctor", "").strip():
            payload["to_doctor"] = fields["to_doctor"].strip()
        out = portal.send("referral", "refer", payload)
        done = words_for(request)("referrals.sent", referral=referral_id, height=out["height"])
        return referrals_page(request, referral_id, done)

    @app.post("/referrals/act", response_class=HTMLResponse)
    def act_on_referral(request: Request, fields: FormFields) -> HTMLResponse:
        """Approve or decline (the patient), accept or report (the receiving physician):
        one signed referral.* tx; the contract decides whether this key may."""
        action, referral_id = fields.get("action", ""), fields.get("referral_id", "")
        payload: dict[str, Any] = {"referral_id": referral_id}
        if action == "decline":
            payload["reason"] = fields.get("reason", "")
        elif action == "report":
            payload["record_id"] = fields.get("record_id", "").strip()
        elif action not in ("approve", "accept"):
            raise Refused("BAD_FORM", "no such referral action", "use the referrals page")
        out = portal.send("referral", action, payload)
        done = words_for(request)(
            f"referrals.{action}_done", referral=referral_id, height=out["height"]
        )
        return referrals_page(request, referral_id, done)
