"""A small HTTP client for the gateway, used by the CLI, the edge, the relay and the demo.

Given a key, it signs every read (edge/signing.py), so the node answers what
that key's holder may see; without one it reaches only the public routes.

Given several node URLs (its own hospital's node first), it fails over: a node
that cannot be reached or answers 5xx is passed over for the next one in order,
and the first is tried again a few seconds later. A signed tx is safe to send
again to another node (same bytes, same tx id): a node that already has it
answers DUPLICATE_TX or BAD_NONCE, which the client resolves by looking the tx
id up instead of reporting a failure.

Calls that are safe to repeat are retried under a RetryPolicy (exponential
backoff with jitter, bounded in attempts and time; NO_RETRY switches it off):
reads, and the submission of signed txs, which a tx id makes idempotent. They
are retried when no node answered (connection refused, reset, timed out) or one
answered 502, 503 or 504, or 429 (after its Retry-After). A call that is not
idempotent (`post(..., idempotent=False)`) is sent once, to one node."""

from __future__ import annotations

import random
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from medchain import crypto
from medchain.contracts.identity.model import did_key
from medchain.contracts.payload import Payload
from medchain.core.tx import build_tx, tx_id_of
from medchain.exceptions import MedChainError
from medchain.sdk.actions import checked_payload
from medchain.sdk.signing import sign_request, with_query
from medchain.sdk.tls import ClientTls, default_client_tls

RETRIED_STATUSES = frozenset({429, 502, 503, 504})  # nothing done, or a proxy's failure
RETRY_FIRST_NODE_AFTER = 5.0  # seconds on a fallback before the first node is tried again
PROBE_TIMEOUT = 2.0  # seconds a "is the first node level again?" probe may take
ALREADY_SEEN = ("DUPLICATE_TX", "BAD_NONCE")  # a node's answer to a tx it already has
MAX_UNRESOLVED = 4096  # signed txs kept to resend after a failover, until committed


class ClientError(MedChainError):
    """The node refused a request; `code` is the MedChain error code name."""

    def __init__(self, code: str, message: str, hint: str = "", status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.hint, self.status = code, message, hint, status


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries a call that is safe to repeat: up to `attempts` tries in
    all (1: never retry), waiting `base_delay` seconds before the first retry and
    twice as long before each next one, at most `max_delay`, each wait drawn between
    half and all of that when `jitter` is on (so many clients do not retry in step),
    and starting no retry whose wait would end more than `budget` seconds after the
    first try. A 429 or 503 with Retry-After waits what the server asked; if that is
    more than `max_delay`, the answer is returned (raised) instead of waiting."""

    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 5.0
    budget: float = 30.0
    jitter: bool = True

    def __post_init__(self) -> None:
        """Refuse a policy that would never try, or wait a negative time."""
        if self.attempts < 1:
            raise ValueError("a retry policy makes at least one attempt (attempts >= 1)")
        if min(self.base_delay, self.max_delay, self.budget) < 0:
            raise ValueError("retry delays and budget are seconds >= 0")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number `retry` + 1 (0-based): exponential, capped,
        jittered."""
        ceiling = min(self.max_delay, self.base_delay * 2.0**retry)
        return rng.uniform(ceiling / 2, ceiling) if self.jitter else ceiling

    def wait_before_retry(
        self, answer: httpx.Response, retry: int, rng: random.Random
    ) -> float | None:
        """The wait before asking again after `answer`: its Retry-After if it has one
        (None if that is longer than `max_delay`: do not retry), else `backoff`."""
        asked = retry_after(answer)
        if asked is None:
            return self.backoff(retry, rng)
        return asked if asked <= self.max_delay else None


NO_RETRY = RetryPolicy(attempts=1)
DEFAULT_RETRY = RetryPolicy()


def retry_after(answer: httpx.Response) -> float | None:
    """The seconds an answer's Retry-After header asks to wait (delay-seconds or an
    HTTP date, RFC 9110), None if it has none or an unreadable one."""
    value = answer.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _segment(value: str) -> str:
    """An id placed in a URL path, refused if it could change the path: ids on
    chain never hold '/', '?', '#', '%', '\\' or control characters."""
    if value in ("", ".", "..") or any(c in value for c in "/?#%\\") or not value.isprintable():
        raise ClientError(
            "BAD_ID", f"{value!r} is not an identifier", "check the id you passed", status=400
        )
    return value


def _fhir_path(path: str) -> str:
    """`Type` or `Type/id`, each part a plain segment."""
    return "/".join(_segment(part) for part in path.split("/"))


def response_error(r: httpx.Response) -> ClientError:
    """The MedChain error an HTTP answer of a node or an edge carries: its code, message
    and hint from the `{"error": ...}` body, or the HTTP status if there is none."""
    body = r.json() if "json" in r.headers.get("content-type", "") else {}
    err = body.get("error", {}) if isinstance(body, dict) else {}
    return ClientError(
        err.get("code", f"HTTP_{r.status_code}"),
        err.get("message", r.text),
        err.get("hint", ""),
        r.status_code,
    )


class Client:
    """Talks to a node's gateway (failing over to the others given), signing its reads
    as `key` if one is given."""

    def __init__(
        self,
        url: str | Sequence[str],
        timeout: float = 30.0,
        *,
        ca: Path | str | None = None,
        tls: ClientTls | None = None,
        key: crypto.KeyPair | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """`ca`: the CA that signed the node's certificate (e.g. <home>/tls/ca.pem);
        `tls`: CA plus a client certificate for mutual TLS. Neither: the process default
        (medchain.sdk.tls.use_client_tls; the CLI sets it from --ca or the home).
        `key`: signs every read, so the node answers what its holder may see.
        `url`: one node, or several in order of preference (see the module docstring).
        `retry`: how idempotent calls are retried (DEFAULT_RETRY if None; NO_RETRY: never)."""
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("a client needs at least one node URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.key = key
        self.tls = tls or (ClientTls(ca=Path(ca)) if ca is not None else default_client_tls())
        context = self.ssl_context
        self._https = [httpx.Client(base_url=u, timeout=timeout, verify=context) for u in self.urls]
        self._current = 0
        self._first_again_at = 0.0
        self._unresolved: dict[str, bytes] = {}  # tx id -> signed tx, to resend elsewhere
        self._unresolved_lock = threading.Lock()
        self.retry = DEFAULT_RETRY if retry is None else retry
        self._jitter = random.Random()  # spreads retries of many clients; not for secrets
        self._closed = False

    def close(self) -> None:
        """Close the connections to every node; calls afterwards raise CLIENT_CLOSED."""
        self._closed = True
        for http in self._https:
            http.close()

    @property
    def closed(self) -> bool:
        """Whether `close` was called (directly or by leaving a `with` block)."""
        return self._closed

    def __enter__(self) -> Client:
        """`with Client(url) as client:` closes the connections when the block ends."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the client, whether or not the block raised."""
        self.close()

    @property
    def url(self) -> str:
        """The URL of the node this client talks to now."""
        return self.urls[self._current]

    @property
    def _http(self) -> httpx.Client:
        return self._https[self._current]

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """What this client verifies servers with; requests to edges reuse it."""
        return self.tls.context()

    def _request(
        self, node: int, method: str, path: str, purpose: str = "", **kw: Any
    ) -> httpx.Response:
        """Send one request to node `node`; a GET is signed (path and query as sent, and
        `purpose`, the purpose of use it is read under) when there is a key."""
        http = self._https[node]
        params = kw.pop("params", None)
        if method == "GET" and self.key is not None and path != "/v1/status":
            query = {k: _param(v) for k, v in (params or {}).items()}
            target = with_query(path, query)
            headers = sign_request(self.key, self.chain_id, method, target, purpose=purpose)
            return http.request(method, target, headers=headers, **kw)
        return http.request(method, path, params=params, **kw)

    def _order(self) -> list[int]:
        """The nodes to try, in order: the current one (or the first again, once its
        wait is over), then the others as configured."""
        start = self._current
        if start != 0 and time.monotonic() >= self._first_again_at:
            if not self._has_unresolved() and self._caught_up(0, start):
                start = 0
            else:
                self._first_again_at = time.monotonic() + RETRY_FIRST_NODE_AFTER
        return [start] + [i for i in range(len(self.urls)) if i != start]

    def _has_unresolved(self) -> bool:
        """Whether txs this client submitted are not yet seen committed: they sit in the
        current node's mempool, invisible to the first node, whose next nonce for the
        key would then be stale; the client stays until they are resolved."""
        with self._unresolved_lock:
            return bool(self._unresolved)

    def _caught_up(self, node: int, current: int) -> bool:
        """Whether `node` has committed at least as far as `current`: a node back from a
        crash replays blocks for a while, and what it answers meanwhile (a nonce, a
        grant) is from the past, so the client stays where it is until it is level."""
        try:
            behind = self._request(node, "GET", "/v1/status", timeout=PROBE_TIMEOUT)
            ahead = self._request(current, "GET", "/v1/status", timeout=PROBE_TIMEOUT)
            return bool(behind.json()["height"] >= ahead.json()["height"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return False

    def _settle(self, node: int) -> None:
        """`node` answered: talk to it from now on; leaving the first node, wait a
        while before trying it again."""
        if node != 0 and (self._current == 0 or time.monotonic() >= self._first_again_at):
            self._first_again_at = time.monotonic() + RETRY_FIRST_NODE_AFTER
        self._current = node

    def _call(self, method: str, path: str, *, idempotent: bool | None = None, **kw: Any) -> Any:
        """One request and its JSON answer, under the retry policy if it is `idempotent`
        (by default: a GET); an error answer is raised as a ClientError."""
        r = self._exchange(method, path, idempotent=idempotent, **kw)
        if r.status_code >= 400:
            raise response_error(r)
        return r.json() if "json" in r.headers.get("content-type", "") else {}

    def _exchange(
        self, method: str, path: str, *, idempotent: bool | None = None, **kw: Any
    ) -> httpx.Response:
        """One request, tried again under the retry policy while no node answers or the
        answer is a RETRIED_STATUSES one, if the request is idempotent; the last answer,
        or UNREACHABLE if no node ever answered."""
        if self._closed:
            raise ClientError("CLIENT_CLOSED", "this client was closed", "make a new Client")
        repeatable = method == "GET" if idempotent is None else idempotent
        policy = self.retry if repeatable else NO_RETRY
        started, attempt = time.monotonic(), 0
        while True:
            final = attempt + 1 >= policy.attempts
            try:
                r = self._send(method, path, fail_over=repeatable, **kw)
            except ClientError as e:
                if e.code != "UNREACHABLE" or final:
                    raise
                wait: float | None = policy.backoff(attempt, self._jitter)
                unreachable: ClientError | None = e
            else:
                if r.status_code not in RETRIED_STATUSES or final:
                    return r
                wait, unreachable = policy.wait_before_retry(r, attempt, self._jitter), None
            if wait is None or time.monotonic() - started + wait > policy.budget:
                if unreachable is not None:
                    raise unreachable
                return r
            time.sleep(wait)
            attempt += 1

    def _send(self, method: str, path: str, *, fail_over: bool = True, **kw: Any) -> httpx.Response:
        """One request to the first node in `_order` that answers it without a 5xx; the
        last 5xx answer if every node gave one, UNREACHABLE if none answered. Without
        `fail_over` (a request not safe to repeat), only the current node is asked."""
        failed: list[str] = []
        answer: httpx.Response | None = None
        order = self._order()
        for node in order if fail_over else order[:1]:
            url = self.urls[node]
            try:
                r = self._request(node, method, path, **dict(kw))
            except httpx.HTTPError as e:
                if "CERTIFICATE_VERIFY_FAILED" in str(e):
                    raise ClientError(
                        "TLS_UNTRUSTED",
                        f"the node at {url} has a certificate this client does not trust: {e}",
                        "use --ca: the CA that signed it (`medchain init` makes <home>/tls/ca.pem)",
                    ) from None
                failed.append(f"{url}: {e}")
                continue
            if r.status_code >= 500:
                answer = answer or r
                failed.append(f"{url}: HTTP {r.status_code}")
                continue
            self._settle(node)
            return r
        if answer is not None:
            return answer
        raise ClientError(
            "UNREACHABLE",
            f"cannot reach any node ({'; '.join(failed)})",
            "start one with `medchain node` or `medchain demo`",
        )

    def status(self) -> dict[str, Any]:
        """GET /v1/status: chain id, height, app hash and clock."""
        return dict(self._call("GET", "/v1/status"))

    def account(self, key: crypto.KeyPair) -> dict[str, Any]:
        """The key's DID, status and next nonce (GET /v1/accounts)."""
        return self.account_of(key.suite, key.public)

    def account_of(self, suite: str, public: bytes) -> dict[str, Any]:
        """A public key's DID, status and next nonce."""
        return dict(self._call("GET", f"/v1/accounts/{_segment(suite)}/{public.hex()}"))

    def submit_raw(self, raw: bytes, wait: bool = True) -> dict[str, Any]:
        """Submit an already signed tx; with `wait`, answer once its block commits. A node
        that already has it (sent before a failover) is asked where it stands instead."""
        try:
            body = {"tx": raw.hex()}
            answer = self._call(
                "POST", "/v1/txs", params={"wait": wait}, json=body, idempotent=True
            )
            return dict(answer)
        except ClientError as e:
            if e.code not in ALREADY_SEEN:
                raise
            found = self._look_up(tx_id_of(raw).hex())
            if found is None:
                raise
        if found["status"] == "pending" and wait:
            self._remember([raw])
            return self.wait_committed([found["tx_id"]])[0]
        return found

    def _look_up(self, tx_id: str) -> dict[str, Any] | None:
        """The tx's status on the current node (pending or committed), None if unknown."""
        try:
            return self.tx(tx_id)
        except ClientError as e:
            if e.status == 404:
                return None
            raise

    def _remember(self, raws: list[bytes]) -> None:
        """Keep signed txs until they are seen committed, to resend them to another node
        if the one that took them goes down first."""
        with self._unresolved_lock:
            for raw in raws:
                self._unresolved[tx_id_of(raw).hex()] = raw
            while len(self._unresolved) > MAX_UNRESOLVED:
                del self._unresolved[next(iter(self._unresolved))]

    def _resend(self, tx_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Send again the txs (kept by `_remember`) the current node does not know: the
        node that took them may have gone down before passing them on. Answers by tx id:
        pending, committed, or the refusal of one that can no longer be committed."""
        with self._unresolved_lock:
            raws = [self._unresolved[t] for t in tx_ids if t in self._unresolved]
        if not raws:
            return {}
        sent = self._call("POST", "/v1/txs/batch", json=_batch(raws), idempotent=True)
        answers = self._resolve_batch(raws, sent)
        return {a["tx_id"]: a for a in answers}

    def _resolve_batch(self, raws: list[bytes], answers: Any) -> list[dict[str, Any]]:
        """A batch's answers, each refusal for a tx the node already has (sent before a
        failover) replaced by where that tx stands; every answer names its tx id."""
        out = []
        for raw, answer in zip(raws, answers, strict=True):
            tx_id = tx_id_of(raw).hex()
            answer = dict(answer) | {"tx_id": answer.get("tx_id") or tx_id}
            if answer["status"] == "refused" and answer.get("code_name") in ALREADY_SEEN:
                answer = self._look_up(tx_id) or answer
            out.append(answer)
        return out

    def tx(self, tx_id: str) -> dict[str, Any]:
        """Where a tx stands: pending, committed (with code and events) or unknown."""
        return dict(self._call("GET", f"/v1/txs/{_segment(tx_id)}"))

    def submit_batch(self, raws: list[bytes]) -> list[dict[str, Any]]:
        """Check and queue many signed txs in order; one answer per tx (a tx a node
        already has is answered with where it stands)."""
        sent = self._call("POST", "/v1/txs/batch", json=_batch(raws), idempotent=True)
        answers = self._resolve_batch(raws, sent)
        self._remember(
            [raw for raw, a in zip(raws, answers, strict=True) if a["status"] == "pending"]
        )
        return answers

    def wait_committed(self, tx_ids: list[str], timeout: float = 60.0) -> list[dict[str, Any]]:
        """Results of submitted txs, in order, once each is in a block. The node holds
        one wait only so long (its wait cap), so this asks again for what is pending."""
        deadline = time.monotonic() + timeout
        results: dict[str, dict[str, Any]] = {}
        pending = list(dict.fromkeys(tx_ids))
        while pending:
            left = max(0.1, min(120.0, deadline - time.monotonic()))
            body = {"tx_ids": pending}
            asked = self._call(
                "POST", "/v1/txs/wait", params={"timeout": left}, json=body, idempotent=True
            )
            for r in asked:
                results[r["tx_id"]] = r
            lost = [t for t in pending if results[t]["status"] == "unknown"]
            results.update(self._resend(lost) if lost else {})
            pending = [t for t in pending if results[t]["status"] == "pending"]
            self._forget([t for t in tx_ids if results.get(t, {}).get("status") != "pending"])
            if time.monotonic() >= deadline:
                break
        unknown = [t for t in tx_ids if results[t]["status"] == "unknown"]
        if unknown:
            raise ClientError(
                "UNKNOWN_TX",
                f"{len(unknown)} tx(s) unknown to the node (never submitted or dropped)",
            )
        if pending:
            raise ClientError("TIMEOUT", f"{len(pending)} tx(s) not committed in {timeout} s")
        return [results[t] for t in tx_ids]

    def _forget(self, tx_ids: list[str]) -> None:
        """Drop kept txs whose fate is known."""
        with self._unresolved_lock:
            for t in tx_ids:
                self._unresolved.pop(t, None)

    def outcomes(
        self, answers: list[dict[str, Any]], timeout: float = 120.0
    ) -> list[dict[str, Any]]:
        """The final answer of each tx of a batch, in order: its committed result, or the
        refusal CheckTx gave it."""
        pending = [a["tx_id"] for a in answers if a["status"] == "pending"]
        results = self.wait_committed(pending, timeout) if pending else []
        committed = {r["tx_id"]: r for r in results}
        return [committed.get(a["tx_id"], a) for a in answers]

    def sign_batch(
        self,
        key: crypto.KeyPair,
        calls: Sequence[tuple[str, str, Mapping[str, Any] | Payload]],
    ) -> list[bytes]:
        """Sign (contract, action, payload) calls with the key's next consecutive nonces.
        A typed payload is checked first (PayloadError: nothing is signed); a plain map
        is signed as given, left to the chain to check."""
        bodies = [
            checked_payload(contract, action, payload)
            if isinstance(payload, Payload)
            else dict(payload)
            for contract, action, payload in calls
        ]
        nonce = self.account(key)["next_nonce"]
        return [
            build_tx(
                key,
                chain_id=self.chain_id,
                contract=contract,
                action=action,
                payload=body,
                nonce=nonce + i,
            )
            for i, ((contract, action, _), body) in enumerate(zip(calls, bodies, strict=True))
        ]

    def send(
        self,
        key: crypto.KeyPair,
        contract: str,
        action: str,
        payload: dict[str, Any],
        wait: bool = True,
    ) -> dict[str, Any]:
        """Sign with the next nonce, submit, and (by default) wait for the block."""
        nonce = self.account(key)["next_nonce"]
        raw = build_tx(
            key,
            chain_id=self.chain_id,
            contract=contract,
            action=action,
            payload=payload,
            nonce=nonce,
        )
        return self.submit_raw(raw, wait)

    @property
    def chain_id(self) -> str:
        """The node's chain id, asked once and kept: every tx must name it."""
        if not hasattr(self, "_chain_id"):
            self._chain_id: str = self.status()["chain_id"]
        return self._chain_id

    def state(self, key: str) -> Any:
        """Raw state at one key (node operators only)."""
        return self._call("GET", "/v1/state", params={"key": key})

    def scan(self, prefix: str, limit: int = 100) -> Any:
        """Raw state under a prefix, up to `limit` keys (node operators only)."""
        return self._call("GET", "/v1/state", params={"prefix": prefix, "limit": limit})

    def did_document(self, did: str) -> dict[str, Any]:
        """A member's W3C DID document, to check their signatures off chain."""
        return dict(self._call("GET", f"/v1/identity/dids/{_segment(did)}"))

    def value(self, key: str) -> Any:
        """The committed value at a state key (bytes as hex), or None."""
        try:
            return self.state(key)["value"]
        except ClientError as e:
            if e.status == 404:
                return None
            raise

    def member(self, did: str) -> dict[str, Any]:
        """A member's identity record; NOT_FOUND if the DID is unknown."""
        return dict(self.state(did_key(did))["value"])

    def org(self, org_id: str) -> dict[str, Any]:
        """An organisation's registration, edge endpoint included once published."""
        return dict(self._call("GET", f"/v1/identity/orgs/{_segment(org_id)}"))

    def org_members(self, org_id: str) -> dict[str, Any]:
        """An organisation's members (DID, name, roles, status): for its staff and
        node operators only (signed)."""
        return dict(self._call("GET", f"/v1/identity/orgs/{_segment(org_id)}/members"))

    def record(self, record_id: str, purpose: str = "") -> dict[str, Any]:
        """A record's registration, read under `purpose` (TREAT if none is given)."""
        return dict(self._call("GET", f"/v1/records/{_segment(record_id)}", purpose=purpose))

    def record_batch_path(self, record_id: str, purpose: str = "") -> dict[str, Any]:
        """The SM3 Merkle path of a batch-registered record to its batch's root (bytes as
        hex; each step {left, hash}); ClientError 404 for a record registered alone."""
        path = f"/v1/records/{_segment(record_id)}/batch-path"
        return dict(self._call("GET", path, purpose=purpose))

    def patient_records(self, patient: str, purpose: str = "") -> list[dict[str, Any]]:
        """The patient's records this client may see, read under `purpose` (TREAT if none
        is given): the node's consent decision for a reader outside the patient's side and
        the custodian depends on it (ETREAT: what an approved break-glass request opens)."""
        path = f"/v1/patients/{_segment(patient)}/records"
        return list(self._call("GET", path, purpose=purpose))

    def session(self, session_id: str) -> dict[str, Any]:
        """One exchange session, as its requester, the custodian or the patient side sees it."""
        return dict(self._call("GET", f"/v1/exchange/sessions/{_segment(session_id)}"))

    def grants(self, patient: str) -> list[dict[str, Any]]:
        """The patient's grants this client may see, each with whether it is in force now."""
        return list(self._call("GET", f"/v1/patients/{_segment(patient)}/grants"))

    def access(self, member: str, record_id: str, purpose: str) -> dict[str, Any]:
        """Whether `member` may read the record for `purpose` now, and why (GET /v1/access)."""
        params = {"member": member, "record": record_id, "purpose": purpose}
        return dict(self._call("GET", "/v1/access", params=params))

    def audit(self, after: int = 0, limit: int = 100, **who: str | None) -> dict[str, Any]:
        """Audit rows for one of patient=, actor=, record=."""
        return dict(self._call("GET", "/v1/audit", params={**who, "after": after, "limit": limit}))

    def fhir(self, path: str, **params: Any) -> dict[str, Any]:
        """GET on the node's FHIR API (`path` like `Consent/<id>`), search params as keywords."""
        return dict(self._call("GET", f"/fhir/{_fhir_path(path)}", params=params))

    def recognition_candidates(
        self, patient: str, member: str, exam_code: str | None = None
    ) -> list[dict[str, Any]]:
        """Prior exams of the patient `member` may reuse instead of repeating them."""
        params = {"patient": patient, "member": member}
        if exam_code is not None:
            params["exam_code"] = exam_code
        return list(self._call("GET", "/v1/recognition/candidates", params=params))

    def recognition_report(self, from_ms: int = 0, to_ms: int | None = None) -> dict[str, Any]:
        """Exams recognised or repeated per hospital over [from_ms, to_ms)."""
        params = {"from_ms": from_ms} | ({} if to_ms is None else {"to_ms": to_ms})
        return dict(self._call("GET", "/v1/recognition/report", params=params))

    def studies(self) -> list[dict[str, Any]]:
        """Every federated study with its open round (any signed member)."""
        return list(self._call("GET", "/v1/studies"))

    def study(self, study_id: str) -> dict[str, Any]:
        """One study's protocol, open round and the hospitals whose cohort is missing."""
        return dict(self._call("GET", f"/v1/studies/{_segment(study_id)}"))

    def study_rounds(self, study_id: str) -> list[dict[str, Any]]:
        """A study's recorded rounds, in order (bytes as hex)."""
        return list(self._call("GET", f"/v1/studies/{_segment(study_id)}/rounds"))

    def study_cohorts(self, study_id: str, round_no: int) -> dict[str, Any]:
        """Each hospital's committed cohort of a round (count and root, no leaves) and
        the hospitals still missing: what a cohort proof is checked against."""
        return dict(self._call("GET", f"/v1/studies/{_segment(study_id)}/cohorts/{round_no}"))

    def study_contributions(self, study_id: str) -> list[dict[str, Any]]:
        """Each hospital's contribution once the study is completed (empty before)."""
        return list(self._call("GET", f"/v1/studies/{_segment(study_id)}/contributions"))

    def cohort_members(self, study_id: str, org: str) -> dict[str, Any]:
        """The patients who would be `org`'s cohort at the last block, with the count and
        root to commit (that hospital's org admins and researchers, regulators)."""
        path = f"/v1/studies/{_segment(study_id)}/cohort-members"
        return dict(self._call("GET", path, params={"org": org}))

    def governance_params(self) -> dict[str, Any]:
        """The governance mode ("vote" or "admin") and parameters in force (signed)."""
        return dict(self._call("GET", "/v1/governance/params"))

    def governance_proposals(self, status: str | None = None) -> list[dict[str, Any]]:
        """Proposals newest first (open, executed or rejected), each with its tally and
        phase at the node's height (signed, any member)."""
        query = f"?status={status}" if status else ""
        return list(self._call("GET", f"/v1/governance/proposals{query}"))

    def governance_proposal(self, proposal_id: int) -> dict[str, Any]:
        """One proposal: its change, electorate and weights, votes, tally and phase."""
        return dict(self._call("GET", f"/v1/governance/proposals/{int(proposal_id)}"))

    def zk_criteria(self) -> list[dict[str, Any]]:
        """Every zero-knowledge eligibility criterion (public: they are policy)."""
        return list(self._call("GET", "/v1/zk/criteria"))

    def zk_attestation(self, attestation_id: str) -> dict[str, Any]:
        """A lab's attestation (commitment, patient, record, lab), for its patient side,
        the lab and regulators; bytes as hex."""
        return dict(self._call("GET", f"/v1/zk/attestations/{_segment(attestation_id)}"))

    def zk_challenge(self, challenge_id: str) -> dict[str, Any]:
        """A challenge with its nonce, status (open, expired, proven) and proof record,
        for the verifier's organisation, the patient side and regulators."""
        return dict(self._call("GET", f"/v1/zk/challenges/{_segment(challenge_id)}"))

    def token_supply(self) -> dict[str, Any]:
        """The token supply record at the last block (public): supply, minted, burned,
        cap, total contribution, height; amounts as decimal strings."""
        return dict(self._call("GET", "/v1/token/supply"))

    def token_rules(self) -> dict[str, Any]:
        """The governed minting rules (public); NOT_FOUND before any were set."""
        return dict(self._call("GET", "/v1/token/rules"))

    def token_orgs(self) -> dict[str, Any]:
        """Every rewarded organisation's balance and contribution (public)."""
        return dict(self._call("GET", "/v1/token/orgs"))

    def token_org(self, org_id: str) -> dict[str, Any]:
        """One organisation's balance and contribution (public; zeros if never rewarded)."""
        return dict(self._call("GET", f"/v1/token/orgs/{_segment(org_id)}"))

    def token_ledger(self, after: int = 0, to_height: int | None = None) -> dict[str, Any]:
        """One page of committed mint and burn events (public): page with after=next
        until done, to sum them against token_supply at the same height."""
        params: dict[str, Any] = {"after": after}
        if to_height is not None:
            params["to_height"] = to_height
        return dict(self._call("GET", "/v1/token/ledger", params=params))

    def token_balance(self, account: str) -> dict[str, Any]:
        """One account's balance: an organisation's for anyone, a DID's for itself, its
        guardian and regulators (a signed read)."""
        return dict(self._call("GET", f"/v1/token/accounts/{_segment(account)}"))

    def cohort_proof(
        self,
        study_id: str,
        round_no: int,
        org: str,
        patient: str | None = None,
        sample: str | None = None,
    ) -> dict[str, Any]:
        """An inclusion or exclusion proof of a patient (default: the signer) or a sample
        id (hex) in `org`'s cohort of a round; verify it yourself against study_cohorts
        with medchain.contracts.research.model.verify_cohort_proof."""
        params: dict[str, Any] = {"round": round_no, "org": org}
        params |= {k: v for k, v in (("patient", patient), ("sample", sample)) if v is not None}
        path = f"/v1/studies/{_segment(study_id)}/cohort-proof"
        return dict(self._call("GET", path, params=params))

    def models(self) -> list[dict[str, Any]]:
        """Every registered model id with its owner and latest version."""
        return list(self._call("GET", "/v1/models"))

    def model(self, model_id: str) -> dict[str, Any]:
        """A model's owner, latest version and every version with its lineage."""
        return dict(self._call("GET", f"/v1/models/{_segment(model_id)}"))

    def model_version(self, model_id: str, version: int) -> dict[str, Any]:
        """One registered version of a model: hashes, licence, owner, lineage."""
        return dict(self._call("GET", f"/v1/models/{_segment(model_id)}/versions/{version}"))

    def provenance(self, record_id: str, purpose: str = "") -> dict[str, Any]:
        """Which model version produced this AI result and how it was trained (whoever
        may see the record, read under `purpose`)."""
        path = f"/v1/records/{_segment(record_id)}/provenance"
        return dict(self._call("GET", path, purpose=purpose))

    def prove_state(self, key: str) -> dict[str, Any]:
        """A key's value at the last block with its proof, to check without trusting the node."""
        return dict(self._call("GET", "/v1/proofs/state", params={"key": key}))

    def prove_tx(self, tx_id: str) -> dict[str, Any]:
        """A committed tx's result and audit events with their proof against its block."""
        return dict(self._call("GET", f"/v1/proofs/tx/{_segment(tx_id)}"))

    def alerts(self, status: str | None = None, rule: str | None = None) -> list[dict[str, Any]]:
        """Supervision alerts, optionally of one status and rule (regulators, operators)."""
        params = {k: v for k, v in (("status", status), ("rule", rule)) if v is not None}
        return list(self._call("GET", "/v1/supervision/alerts", params=params))

    def audit_export(
        self, from_ms: int, to_ms: int, org: str | None = None, fmt: str = "csv"
    ) -> bytes:
        """Audit events of a period (and org) as CSV or a FHIR Bundle, as bytes."""
        params: dict[str, Any] = {"from_ms": from_ms, "to_ms": to_ms, "format": fmt}
        if org is not None:
            params["org"] = org
        r = self._exchange("GET", "/v1/audit/export", params=params)
        if r.status_code != 200:
            raise response_error(r)
        return r.content

    def get(self, path: str, **params: Any) -> Any:
        """Any GET of the gateway's API, decoded (retried under the retry policy)."""
        return self._call("GET", path, params=params)

    def post(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        idempotent: bool = False,
        **params: Any,
    ) -> Any:
        """Any POST of the gateway's API with a JSON body, decoded. Sent once, to one
        node, unless the caller says repeating it cannot do anything twice
        (`idempotent=True`): then it is retried and failed over like a read."""
        return self._call("POST", path, params=params, json=body, idempotent=idempotent)

    def sign_action(
        self,
        key: crypto.KeyPair,
        contract: str,
        action: str,
        payload: Payload | Mapping[str, Any],
        *,
        version: int = 1,
        nonce: int | None = None,
    ) -> bytes:
        """A signed tx of a typed action payload (e.g. consent.payloads.Grant), checked
        against the contract's payload type before signing (PayloadError if wrong:
        nothing is signed or sent); `nonce` defaults to the key's next one."""
        body = checked_payload(contract, action, payload, version)
        return build_tx(
            key,
            chain_id=self.chain_id,
            contract=contract,
            action=action,
            payload=body,
            nonce=self.account(key)["next_nonce"] if nonce is None else nonce,
            version=version,
        )

    def submit_action(
        self,
        key: crypto.KeyPair,
        contract: str,
        action: str,
        payload: Payload | Mapping[str, Any],
        *,
        wait: bool = True,
        version: int = 1,
    ) -> dict[str, Any]:
        """Check a typed action payload, sign it with the key's next nonce and submit it;
        with `wait`, answer once its block commits (code_name OK or the refusal)."""
        raw = self.sign_action(key, contract, action, payload, version=version)
        return self.submit_raw(raw, wait)

    def block_time_ms(self) -> int:
        """The time of the last committed block: the chain's clock for expiries."""
        return int(self.status()["last_block_time_ms"])

    def block(self, height: int) -> dict[str, Any]:
        """The block at `height` with its tx results (operators, regulators)."""
        return dict(self._call("GET", f"/v1/blocks/{height}"))


def _batch(raws: list[bytes]) -> dict[str, list[str]]:
    """The body of POST /v1/txs/batch."""
    return {"txs": [raw.hex() for raw in raws]}


def _param(value: Any) -> str | None:
    """A query value as the gateway reads it back (booleans as true/false)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
