"""The regulator chain's supervision contract: digests only in order and only
with a running hash that follows; each rule raises an alert when it should and
stays quiet when it should not."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
from support.ledger import Ledger, did_of
from support.stateless import apply_without_state

from medchain import crypto
from medchain.contracts.payload import payload_schema
from medchain.contracts.supervision import model as m
from medchain.contracts.supervision.handler import SupervisionHandler
from medchain.contracts.supervision.payloads import RuleName
from medchain.exceptions import Code, InvalidTransaction

SOURCE = "business-1"
T0 = 1_800_000_000_000
MINUTE = 60_000


class Regulator:
    """A regulator chain with one authorised relayer, fed digests by hand."""

    def __init__(self, path: Path) -> None:
        self.root = crypto.generate_keypair()
        self.inspector = crypto.generate_keypair()
        self.relayer = crypto.generate_keypair()
        self.ledger = Ledger(path, self.root, profile="regulator", chain_id="regulator-test")
        self.ledger.add_org("nhc", crypto.generate_keypair(), "regulator")
        admin = crypto.generate_keypair()
        self.ledger.add_org("nhsa", admin, "regulator")
        self.ledger.add_staff(admin, "nhsa", self.inspector, ["regulator"])
        self.ledger.add_staff(admin, "nhsa", self.relayer, ["device"])
        r = self.run(
            self.inspector, "authorize_relayer", {"source": SOURCE, "relayer": did_of(self.relayer)}
        )
        assert r.code == Code.OK, r.log
        self.height, self.running, self.block_hash = -1, m.GENESIS_RUNNING_HASH, bytes(32)

    def run(self, key: crypto.KeyPair, action: str, payload: dict[str, Any]) -> Any:
        return self.ledger.run(key, action, payload, "supervision")

    def digest(
        self, time_ms: int, events: list[tuple[str, dict[str, str]]], **override: Any
    ) -> Any:
        height = self.height + 1
        block_hash = crypto.sm3(height.to_bytes(8, "big"))
        body = m.digest_body(
            SOURCE,
            height,
            block_hash,
            self.block_hash,
            bytes(32),
            len(events),
            time_ms,
            [{"tx": i, "type": t, "attributes": a} for i, (t, a) in enumerate(events)],
        )
        body = body | {"running_hash": m.running_hash(self.running, body)} | override
        r = self.run(self.relayer, "digest", body)
        if r.code == Code.OK:
            self.height, self.running, self.block_hash = height, body["running_hash"], block_hash
        return r

    def alerts(self, rule: str | None = None) -> list[dict[str, Any]]:
        found = [
            self.ledger.state(k) for k, _ in self.ledger.app.db.scan("supervision/alert/", 1000)
        ]
        return [a for a in found if rule is None or a["rule"] == rule]


@pytest.fixture
def reg(tmp_path: Path) -> Regulator:
    return Regulator(tmp_path / "regulator.db")


def access(
    session: str, actor: str = "did:dr", patient: str = "did:p", basis: str = "grant g1"
) -> tuple[str, dict[str, str]]:
    return (
        "exchange.opened",
        {
            "session_id": session,
            "record_id": "r1",
            "patient": patient,
            "actor": actor,
            "basis": basis,
            "custodian": "hosp-a",
        },
    )


def test_digests_only_in_order_and_unaltered(reg: Regulator) -> None:
    assert reg.digest(T0, []).code == Code.OK
    assert reg.digest(T0 + 1, []).code == Code.OK
    # a gap, a duplicate, an altered body, a broken block chain: all refused
    gap = reg.digest(T0 + 2, [], height=reg.height + 2)
    assert gap.code == Code.INVALID_STATE and "gap" in gap.log
    dup = reg.digest(T0 + 2, [], height=reg.height)
    assert dup.code == Code.INVALID_STATE and "duplicate" in dup.log
    altered = reg.digest(T0 + 2, [], app_hash=b"\x01" * 32)
    assert altered.code == Code.INVALID_STATE and "running hash" in altered.log
    forked = reg.digest(T0 + 2, [], prev_block_hash=b"\x02" * 32)
    assert forked.code == Code.INVALID_STATE
    stranger = reg.run(reg.inspector, "digest", {"source": SOURCE})
    assert stranger.code == Code.INVALID_PAYLOAD
    stream = reg.ledger.state(m.stream_key(SOURCE))
    assert stream["height"] == 1 and stream["digests"] == 2


def test_break_glass_alerts_and_normal_access_does_not(reg: Regulator) -> None:
    reg.digest(
        T0,
        [
            (
                "consent.granted",
                {
                    "grant_id": "g1",
                    "patient": "did:p",
                    "expires_ms": str(T0 + 60 * MINUTE),
                    "actor": "did:p",
                },
            )
        ],
    )
    reg.digest(
        T0 + MINUTE,
        [access("s1"), ("exchange.acknowledged", {"session_id": "s1", "actor": "did:dr"})],
    )
    assert reg.alerts() == []
    reg.digest(
        T0 + 2 * MINUTE,
        [
            (
                "consent.break_glass_opened",
                {
                    "request_id": "b1",
                    "patient": "did:p",
                    "doctor": "did:dr",
                    "actor": "did:admin",
                    "notify": "did:p",
                },
            )
        ],
    )
    [alert] = reg.alerts("break_glass")
    assert alert["subject"] == "did:dr" and alert["patient"] == "did:p"


def test_access_outside_a_consent_window(reg: Regulator) -> None:
    grant = {
        "grant_id": "g1",
        "patient": "did:p",
        "expires_ms": str(T0 + 10 * MINUTE),
        "actor": "did:p",
    }
    reg.digest(T0, [("consent.granted", grant)])
    reg.digest(T0 + MINUTE, [access("s1")])
    assert reg.alerts("outside_consent_window") == []  # inside the window
    reg.digest(T0 + 11 * MINUTE, [access("s2")])  # after expiry
    assert len(reg.alerts("outside_consent_window")) == 1
    reg.digest(
        T0 + 12 * MINUTE,
        [("consent.granted", grant | {"grant_id": "g2", "expires_ms": str(T0 + 99 * MINUTE)})],
    )
    reg.digest(
        T0 + 13 * MINUTE,
        [("consent.revoked", {"grant_id": "g2", "patient": "did:p", "actor": "did:p"})],
    )
    reg.digest(T0 + 14 * MINUTE, [access("s3", basis="grant g2")])  # after revocation
    assert len(reg.alerts("outside_consent_window")) == 2


def test_volume_spike_per_doctor(reg: Regulator) -> None:
    reg.run(
        reg.inspector,
        "set_rule",
        {
            "rule": "volume_spike",
            "enabled": True,
            "params": {"max_per_actor": 5, "max_per_patient": 100},
        },
    )
    reg.digest(T0, [access(f"s{i}", basis="break-glass b1") for i in range(5)])
    assert reg.alerts("volume_spike") == []  # at the limit
    reg.digest(T0 + 1, [access("s5", basis="break-glass b1")])
    [alert] = reg.alerts("volume_spike")
    assert alert["subject"] == "did:dr"
    reg.digest(T0 + 2, [access("s6", basis="break-glass b1")])
    assert len(reg.alerts("volume_spike")) == 1  # once per window
    other = [access(f"t{i}", actor="did:other", basis="break-glass b1") for i in range(5)]
    reg.digest(T0 + 3, other)
    assert len(reg.alerts("volume_spike")) == 1


def test_sessions_never_acknowledged(reg: Regulator) -> None:
    reg.digest(T0, [access("s1", basis="break-glass b1"), access("s2", basis="break-glass b1")])
    reg.digest(
        T0 + 10 * MINUTE, [("exchange.acknowledged", {"session_id": "s1", "actor": "did:dr"})]
    )
    assert reg.alerts("unacknowledged") == []
    reg.digest(T0 + 31 * MINUTE, [])
    [alert] = reg.alerts("unacknowledged")
    assert "s2" in alert["detail"]
    reg.digest(T0 + 90 * MINUTE, [])
    assert len(reg.alerts("unacknowledged")) == 1  # raised once


def test_relay_gap_is_reported(reg: Regulator) -> None:
    reg.digest(T0, [])
    quiet = reg.run(reg.inspector, "report_lag", {"source": SOURCE, "head_height": 3})
    assert quiet.code == Code.OK and reg.alerts("relay_gap") == []  # a little behind: fine
    reg.run(reg.inspector, "report_lag", {"source": SOURCE, "head_height": 50})
    [alert] = reg.alerts("relay_gap")
    assert "50 blocks behind" in alert["detail"]
    assert (
        reg.run(reg.relayer, "report_lag", {"source": SOURCE, "head_height": 99}).code
        == Code.UNAUTHORIZED
    )


def test_rules_are_data_a_regulator_changes(reg: Regulator) -> None:
    off = {"rule": "break_glass", "enabled": False}
    assert reg.run(reg.relayer, "set_rule", off).code == Code.UNAUTHORIZED
    assert reg.run(reg.inspector, "set_rule", off).code == Code.OK
    reg.digest(
        T0,
        [
            (
                "consent.break_glass_opened",
                {"request_id": "b1", "patient": "did:p", "doctor": "did:dr", "actor": "did:a"},
            )
        ],
    )
    assert reg.alerts("break_glass") == []
    bad = {"rule": "volume_spike", "enabled": True, "params": {"max_per_actor": -1}}
    assert reg.run(reg.inspector, "set_rule", bad).code == Code.INVALID_PAYLOAD
    assert (
        reg.run(reg.inspector, "set_rule", {"rule": "nope", "enabled": True}).code
        == Code.INVALID_PAYLOAD
    )


def test_a_silent_relay_is_reported_even_a_block_behind(reg: Regulator) -> None:
    reg.run(
        reg.inspector,
        "set_rule",
        {"rule": "relay_gap", "enabled": True, "params": {"max_silence_ms": 3000}},
    )
    reg.digest(T0, [])
    reg.run(reg.inspector, "report_lag", {"source": SOURCE, "head_height": 1})
    assert reg.alerts("relay_gap") == []  # one block behind, just relayed
    for _ in range(4):  # Ledger blocks are 1 s apart
        reg.ledger.commit([])
    reg.run(reg.inspector, "report_lag", {"source": SOURCE, "head_height": 1})
    assert len(reg.alerts("relay_gap")) == 1
    reg.run(reg.inspector, "report_lag", {"source": SOURCE, "head_height": 0})
    assert len(reg.alerts("relay_gap")) == 1  # caught up: nothing new


def test_a_block_too_big_for_one_digest_is_relayed_in_parts(reg: Regulator) -> None:
    height, block_hash = 0, crypto.sm3(b"block 0")
    events = [
        [
            {
                "tx": i,
                "type": "exchange.opened",
                "attributes": {
                    "session_id": f"s{i}",
                    "actor": "did:dr",
                    "patient": "did:p",
                    "basis": "break-glass b1",
                    "record_id": "r",
                },
            }
        ]
        for i in range(2)
    ]

    def part(n: int, running: bytes, **override: Any) -> dict[str, Any]:
        body = (
            m.digest_body(SOURCE, height, block_hash, bytes(32), bytes(32), 2, T0, events[n], n, 2)
            | override
        )
        return body | {"running_hash": m.running_hash(running, body)}

    second_first = part(1, m.GENESIS_RUNNING_HASH)
    assert reg.run(reg.relayer, "digest", second_first).code == Code.INVALID_STATE
    first = part(0, m.GENESIS_RUNNING_HASH)
    assert reg.run(reg.relayer, "digest", first).code == Code.OK
    stream = reg.ledger.state(m.stream_key(SOURCE))
    assert m.complete_height(stream) == -1  # half a block is not a relayed block
    other_block = part(1, first["running_hash"], app_hash=b"\x09" * 32)
    r = reg.run(reg.relayer, "digest", other_block)
    assert r.code == Code.INVALID_STATE and "same block" in r.log
    assert reg.run(reg.relayer, "digest", part(1, first["running_hash"])).code == Code.OK
    stream = reg.ledger.state(m.stream_key(SOURCE))
    assert m.complete_height(stream) == 0 and stream["digests"] == 2
    assert len(reg.ledger.state(m.pending_key(SOURCE, "s1")) or {}) > 0  # rules saw part 2


@pytest.mark.parametrize(
    "attributes",
    [
        {"grant_id": "g" * 600, "patient": "did:p", "expires_ms": str(T0), "actor": "did:p"},
        {"patient": "did:p", "actor": "did:p"},
        {"grant_id": "g2", "patient": "did:p", "expires_ms": "soon", "actor": "did:p"},
    ],
    ids=["long-grant-id", "no-grant-id", "expiry-not-a-number"],
)
def test_a_relayed_event_out_of_shape_is_refused_not_a_crash(
    reg: Regulator, attributes: dict[str, str]
) -> None:
    """Regression (issue 12, finding 12): such events raised ValueError/KeyError out of
    FinalizeBlock, which in consensus halts every validator on the same block."""
    r = reg.digest(T0, [("consent.granted", attributes)])
    assert r.code == Code.INVALID_PAYLOAD, r.log
    assert reg.ledger.state(m.stream_key(SOURCE))["height"] == -1


EVENT = {"tx": 0, "type": "consent.granted", "attributes": {"grant_id": "g1", "expires_ms": ""}}
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "authorize_relayer": {"source": SOURCE, "relayer": "did:medchain:x", "from_height": 3},
    "digest": {
        "source": SOURCE,
        "height": 1,
        "part": 0,
        "parts": 1,
        "block_hash": bytes(32),
        "prev_block_hash": bytes(32),
        "app_hash": bytes(32),
        "tx_count": 1,
        "time_ms": T0,
        "events": [EVENT],
        "running_hash": bytes(32),
    },
    "report_lag": {"source": SOURCE, "head_height": 9},
    "set_rule": {"rule": "volume_spike", "enabled": True, "params": {"max_per_actor": 5}},
    "ack_alert": {"alert_id": "a-1", "note": "seen"},
}


@pytest.mark.parametrize("action", sorted(VALID_PAYLOADS))
def test_malformed_payloads_are_refused_before_any_state_read(action: str) -> None:
    valid = VALID_PAYLOADS[action]
    first = next(iter(valid))
    for payload in (
        {k: v for k, v in valid.items() if k != first},  # missing
        {**valid, "x": 1},  # extra
        {**valid, first: 7 if isinstance(valid[first], str) else "7"},  # wrong type
    ):
        with pytest.raises(InvalidTransaction) as refused:
            apply_without_state(SupervisionHandler(), action, payload)
        assert refused.value.code == Code.INVALID_PAYLOAD, payload
    with pytest.raises(AssertionError, match="state read"):  # well formed: on to state
        apply_without_state(SupervisionHandler(), action, valid)


@pytest.mark.parametrize(
    ("action", "change"),
    [
        ("authorize_relayer", {"source": "bad source"}),
        ("authorize_relayer", {"source": "business\n"}),
        ("report_lag", {"source": "x" * 65}),
        ("digest", {"part": 1, "parts": 1}),
        ("digest", {"part": -1}),
        ("digest", {"parts": m.MAX_PARTS + 1}),
        ("digest", {"height": True}),  # bool is not int
        ("digest", {"events": [EVENT] * (m.MAX_EVENTS + 1)}),
        ("digest", {"events": [EVENT | {"extra": 1}]}),
        ("digest", {"events": [{"tx": 0, "type": "x"}]}),
        ("digest", {"events": [EVENT | {"attributes": {"grant_id": 5}}]}),
        ("digest", {"events": [{"tx": 0, "type": "consent.revoked", "attributes": {}}]}),
        ("digest", {"events": [{**EVENT, "attributes": {"grant_id": "g", "expires_ms": "-1"}}]}),
        ("digest", {"events": [{"tx": 0, "type": "exchange.opened", "attributes": {}}]}),
        ("set_rule", {"rule": "no_such_rule"}),
        ("set_rule", {"params": {"max_per_actor": 0}}),
        ("set_rule", {"params": {"window": 5}}),
        ("set_rule", {"params": {"max_per_actor": True}}),
        ("set_rule", {"enabled": 1}),
    ],
)
def test_supervision_payload_rules_hold_before_any_state_read(
    action: str, change: dict[str, Any]
) -> None:
    with pytest.raises(InvalidTransaction) as refused:
        apply_without_state(SupervisionHandler(), action, {**VALID_PAYLOADS[action], **change})
    assert refused.value.code == Code.INVALID_PAYLOAD


def test_rule_names_in_the_payload_type_are_the_rules_genesis_writes() -> None:
    assert set(get_args(RuleName)) == set(m.DEFAULT_RULES)


def test_every_action_publishes_a_json_schema() -> None:
    for action, kind in SupervisionHandler.payloads.items():
        schema = payload_schema(kind)
        assert schema["$ref"].endswith(kind.__name__), action
