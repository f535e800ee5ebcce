"""Traceability views, and the public page a patient reaches by scanning a pack.

`/01/{gtin}/21/{serial}` (and with `/10/{lot}`) is the GS1 Digital Link path,
so a QR code that encodes `https://<this node>/01/.../21/...` opens the pack's
life cycle here: product, batch and expiry, ingredient lots, each step with
its date and the kind of organisation, cold-chain and recall status, and any
counterfeit warning. No organisation ids, prices or quantities are shown.
Those pages are public (`public_router`); traces, shipments and devices name
the organisations holding each unit and the procedures a device was used in,
so they are signed reads for the parties involved, regulators and operators.
"""

from __future__ import annotations

import base64
import hashlib
import html
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import HTMLResponse, JSONResponse

from medchain.consensus.engine import Engine as ChainEngine
from medchain.consensus.projections import indexed_units
from medchain.contracts.devices import model as devices
from medchain.contracts.identity import model as identity
from medchain.contracts.supply import model as m
from medchain.fhir.export import iso
from medchain.gateway.auth import SIGNED, SignedCaller
from medchain.gateway.deps import Engine, getter, scanner
from medchain.gateway.errors import NotFound
from medchain.gateway.schemas import to_json

router = APIRouter(tags=["supply chain"])
public_router = APIRouter(tags=["supply chain"])


def pack_view(engine: ChainEngine, gtin: str, serial: str) -> dict[str, Any]:
    """The public life cycle of one pack."""
    get = getter(engine)
    unit_id = f"{gtin}/{serial}"
    unit = get(m.unit_key(unit_id))
    if unit is None:
        raise NotFound(f"no pack {unit_id} on the ledger: it may be counterfeit")
    product = get(m.product_key(gtin)) or {}
    batch = get(m.batch_key(gtin, unit["lot"])) or {}
    ingredients = [get(m.ingredient_key(i)) or {"lot_id": i} for i in batch.get("ingredients", [])]
    org_types: dict[str, str] = {}

    def kind_of(org_id: str) -> str:
        if org_id not in org_types:
            org = get(identity.org_key(org_id)) or {}
            org_types[org_id] = org.get("org_type", "organisation")
        return org_types[org_id]

    flags = [
        row["attributes"].get("reason", "")
        for row in engine.app.db.audit(record_id=unit_id, limit=100)
        if row["kind"] == "supply.counterfeit_suspected"
    ]
    cold_chain_ok = all(step != "quarantine" for step, _, _ in unit["history"])
    blocked = m.batch_blocked(get, batch) if batch else "unknown batch"
    today = iso(engine.app.db.block_time_ms())[:10]
    expired = bool(batch) and batch["expiry"] < today
    warnings = [
        w
        for w in (
            None if cold_chain_ok else "temperature excursion in transit: quarantined",
            blocked,
            "expired" if expired else None,
            *(f"suspected counterfeit: {f}" for f in flags),
        )
        if w
    ]
    return {
        "pack": unit_id,
        "product": {"gtin": gtin, "name": product.get("name"), "kind": product.get("kind")},
        "batch": {
            "lot": unit["lot"],
            "expiry": batch.get("expiry"),
            "status": batch.get("status"),
            "recall_reason": batch.get("recall_reason"),
        },
        "ingredients": [
            {"lot": i.get("lot_id"), "substance": i.get("substance"), "status": i.get("status")}
            for i in ingredients
        ],
        "status": unit["status"],
        "life_cycle": [
            {"step": step, "time": iso(t), "by": kind_of(org)} for step, t, org in unit["history"]
        ],
        "cold_chain": "ok" if cold_chain_ok else "excursion",
        "recalled": blocked is not None and "recalled" in blocked,
        "counterfeit_flags": flags,
        "verdict": "ok" if not warnings else "do not use",
        "warnings": warnings,
    }


# The portal's stylesheet, inlined so a pack page is one response in the portal's look
# (the gateway may not import the portal: the file is read as package data).
PORTAL_CSS = (Path(__file__).parents[2] / "portal" / "static" / "portal.css").read_text()
PACK_CSS = """
#verdict.ok { border-left: 6px solid var(--ok); background: #e8f5e9; padding: .5rem 1rem; }
#verdict.bad { border-left: 6px solid var(--bad); background: #fde8e8; padding: .5rem 1rem; }
"""
# The page's one inline stylesheet, allowed by its hash; nothing else loads or runs.
PACK_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256((PORTAL_CSS + PACK_CSS).encode()).digest()).decode()
    + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
PACK_WORDS: dict[str, dict[str, str]] = {
    "title": {"en": "MedChain pack check", "zh-CN": "MedChain 药品核验"},
    "skip": {"en": "Skip to content", "zh-CN": "跳到正文"},
    "ok": {"en": "Genuine pack, safe to use", "zh-CN": "正品，可以使用"},
    "bad": {"en": "Do not use this pack", "zh-CN": "请勿使用此药品"},
    "warnings": {"en": "Warnings", "zh-CN": "警告"},
    "pack": {"en": "Pack", "zh-CN": "包装"},
    "lot": {"en": "Lot", "zh-CN": "批号"},
    "expires": {"en": "Expires", "zh-CN": "有效期至"},
    "cold_chain": {"en": "Cold chain", "zh-CN": "冷链"},
    "life_cycle": {"en": "Life cycle", "zh-CN": "流通记录"},
    "time": {"en": "Time (UTC)", "zh-CN": "时间（UTC）"},
    "step": {"en": "Step", "zh-CN": "环节"},
    "by": {"en": "By", "zh-CN": "执行方"},
    "made_from": {"en": "Made from", "zh-CN": "原料"},
    "note": {
        "en": "Read from the MedChain ledger; no organisation ids, prices or quantities are shown.",
        "zh-CN": "数据来自 MedChain 账本；不显示机构标识、价格或数量。",
    },
}


def pack_language(accept_language: str | None) -> str:
    """zh-CN for a browser that prefers Chinese, else English (the page's two languages)."""
    first = (accept_language or "").split(",")[0].strip().lower()
    return "zh-CN" if first.startswith("zh") else "en"


def _page(view: dict[str, Any], lang: str = "en") -> str:
    """The pack's public page, in the portal's look: the same stylesheet, a skip link,
    one h1 and a table with column headers; every value from the ledger escaped."""
    e = html.escape

    def t(word: str) -> str:
        return PACK_WORDS[word][lang]

    rows = "".join(
        f"<tr><td>{e(s['time'][:16].replace('T', ' '))}</td><td>{e(s['step'])}</td>"
        f"<td>{e(s['by'])}</td></tr>"
        for s in view["life_cycle"]
    )
    warnings = "".join(f"<li>{e(w)}</li>" for w in view["warnings"])
    ingredients = "".join(
        f"<li>{e(str(i['substance']))} {t('lot')} {e(str(i['lot']))} ({e(str(i['status']))})</li>"
        for i in view["ingredients"]
    )
    ok = view["verdict"] == "ok"
    name = e(str(view["product"]["name"]))
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name} · {t("title")}</title>
<style>{PORTAL_CSS}{PACK_CSS}</style>
</head>
<body>
<a class="skip" href="#main">{t("skip")}</a>
<header><p class="brand">{t("title")}</p></header>
<main id="main" tabindex="-1">
<h1>{name}</h1>
<p id="verdict" class="{"ok" if ok else "bad"}"><strong>{t("ok") if ok else t("bad")}</strong></p>
{f'<h2>{t("warnings")}</h2><ul id="warnings" class="refusal">{warnings}</ul>' if warnings else ""}
<dl class="resource">
<dt>{t("pack")}</dt><dd>{e(view["pack"])}</dd>
<dt>{t("lot")}</dt><dd>{e(view["batch"]["lot"])}</dd>
<dt>{t("expires")}</dt><dd>{e(str(view["batch"]["expiry"]))}</dd>
<dt>{t("cold_chain")}</dt><dd id="cold-chain">{e(view["cold_chain"])}</dd>
</dl>
<h2>{t("life_cycle")}</h2>
<table id="life-cycle">
<thead><tr><th scope="col">{t("time")}</th><th scope="col">{t("step")}</th>\
<th scope="col">{t("by")}</th></tr></thead>
<tbody>{rows}</tbody>
</table>
<h2>{t("made_from")}</h2><ul>{ingredients}</ul>
</main>
<footer><p>{t("note")}</p></footer>
</body>
</html>"""


def _answer(
    view: dict[str, Any], accept: str | None, accept_language: str | None = None
) -> HTMLResponse | JSONResponse:
    if accept and "application/json" in accept:
        return JSONResponse(view)
    return HTMLResponse(_page(view, pack_language(accept_language)), headers=PACK_HEADERS)


@public_router.get(
    "/01/{gtin}/21/{serial}", summary="GS1 Digital Link: a pack's public page", response_model=None
)
def digital_link(
    gtin: str,
    serial: str,
    engine: Engine,
    accept: Annotated[str | None, Header()] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse | JSONResponse:
    """What a pack's GS1 Digital Link QR code opens, for anyone (no signature): an HTML
    page, or JSON when the Accept header asks for it, with a verdict on the pack."""
    return _answer(pack_view(engine, gtin, serial), accept, accept_language)


@public_router.get(
    "/01/{gtin}/10/{lot}/21/{serial}",
    summary="GS1 Digital Link with the lot",
    response_model=None,
)
def digital_link_lot(
    gtin: str,
    lot: str,
    serial: str,
    engine: Engine,
    accept: Annotated[str | None, Header()] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse | JSONResponse:
    """The Digital Link page for a code that carries the lot; a lot that differs from
    the ledger's turns the verdict into `do not use`."""
    view = pack_view(engine, gtin, serial)
    if view["batch"]["lot"] != lot:
        view["warnings"].append(f"the code says lot {lot}, the ledger says {view['batch']['lot']}")
        view["verdict"] = "do not use"
    return _answer(view, accept, accept_language)


@public_router.get("/v1/supply/units/{gtin}/{serial}", summary="A pack's public life cycle (JSON)")
def unit(gtin: str, serial: str, engine: Engine) -> dict[str, Any]:
    """A pack's public life cycle and verdict as JSON, for pharmacy and wholesaler
    systems verifying a pack before dispensing (no signature)."""
    return pack_view(engine, gtin, serial)


@router.get(
    "/v1/supply/trace/{lot_id}",
    summary="Every batch and unit made from an ingredient lot (its supplier, the makers of "
    "those batches, regulators and operators)",
    openapi_extra=SIGNED,
)
def trace(lot_id: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """For a recall: every batch and unit made from an ingredient lot, for its supplier,
    the makers who used it, regulators and operators; 404 to anyone else."""
    ingredient = getter(engine)(m.ingredient_key(lot_id))
    result = m.trace_ingredient(
        getter(engine),
        scanner(engine, limit=10_000_000),
        lot_id,
        units=indexed_units(engine.app.db),
    )
    parties = {b["manufacturer"] for b in result["batches"]} | {
        None if ingredient is None else ingredient["supplier"]
    }
    if ingredient is None or not (caller.supervises or caller.org_id in parties - {None}):
        raise NotFound(f"no ingredient lot {lot_id!r} you may trace")
    return dict(to_json(result))


@router.get(
    "/v1/supply/shipments/{shipment}",
    summary="A shipment and its cold-chain state (sender, receiver, regulators, operators)",
    openapi_extra=SIGNED,
)
def shipment(shipment: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """A shipment with its cold-chain state (last reading, time out of range), for its
    sender, its receiver, regulators and operators; 404 to anyone else."""
    found = getter(engine)(m.shipment_key(shipment))
    if found is None or not (caller.supervises or caller.org_id in (found["from"], found["to"])):
        raise NotFound(f"no shipment {shipment!r} you may see")
    return dict(to_json(found))


@router.get(
    "/v1/supply/devices/{gtin}/{serial}",
    summary="A device: batch, history, uses (its owner, regulators, operators)",
    openapi_extra=SIGNED,
)
def device(gtin: str, serial: str, engine: Engine, caller: SignedCaller) -> dict[str, Any]:
    """A medical device by UDI with the procedures it was used in and other devices of
    its lot, for its owner, regulators and operators; 404 to anyone else."""
    udi = f"{gtin}/{serial}"
    found = getter(engine)(devices.device_key(udi))
    if found is None or not (caller.supervises or caller.org_id == found["owner"]):
        raise NotFound(f"no device {udi} you may see")
    uses = [key.rsplit("/", 1)[1] for key, _ in scanner(engine)(devices.use_prefix(udi))]
    same_lot = [
        other["udi"]
        for _, other in scanner(engine)(devices.product_devices_prefix(gtin))
        if other["lot"] == found["lot"] and other["udi"] != udi
    ]
    return dict(to_json(found)) | {"procedure_records": uses, "same_lot_devices": same_lot}
