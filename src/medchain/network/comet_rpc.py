"""CometBFT's RPC JSON as crypto/cometbft.py's typed headers, commits and validator
sets: the parsing stays at the network edge, the finality checks in the pure
crypto layer."""

from __future__ import annotations

import base64
from typing import Any

from medchain.crypto import cometbft
from medchain.exceptions import MedChainError

ED25519_KEY_TYPE = "tendermint/PubKeyEd25519"
NO_TIME = cometbft.Timestamp(-62135596800)  # Go's zero time: an absent vote's timestamp


class UnsupportedValidatorKey(MedChainError):
    """A validator of the business network has a key type the regulator chain cannot
    check (only ed25519 is)."""


def parse_time(text: str) -> cometbft.Timestamp:
    """An RFC 3339 UTC time as CometBFT's RPC writes it (nanosecond precision)."""
    date, _, clock = text.rstrip("Z").partition("T")
    whole, _, fraction = clock.partition(".")
    year, month, day = (int(x) for x in date.split("-"))
    hour, minute, second = (int(x) for x in whole.split(":"))
    days = _days_from_civil(year, month, day)
    seconds = ((days * 24 + hour) * 60 + minute) * 60 + second
    return cometbft.Timestamp(seconds, int((fraction + "000000000")[:9]))


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _block_id_from_rpc(b: dict[str, Any]) -> cometbft.BlockId:
    return cometbft.BlockId(
        bytes.fromhex(b["hash"]), int(b["parts"]["total"]), bytes.fromhex(b["parts"]["hash"])
    )


def header_from_rpc(h: dict[str, Any]) -> cometbft.Header:
    """A Header from the `header` object of CometBFT's /commit or /block answer."""
    return cometbft.Header(
        version_block=int(h["version"]["block"]),
        version_app=int(h["version"].get("app", 0)),
        chain_id=str(h["chain_id"]),
        height=int(h["height"]),
        time=parse_time(h["time"]),
        last_block_id=_block_id_from_rpc(h["last_block_id"]),
        last_commit_hash=bytes.fromhex(h["last_commit_hash"]),
        data_hash=bytes.fromhex(h["data_hash"]),
        validators_hash=bytes.fromhex(h["validators_hash"]),
        next_validators_hash=bytes.fromhex(h["next_validators_hash"]),
        consensus_hash=bytes.fromhex(h["consensus_hash"]),
        app_hash=bytes.fromhex(h["app_hash"]),
        last_results_hash=bytes.fromhex(h["last_results_hash"]),
        evidence_hash=bytes.fromhex(h["evidence_hash"]),
        proposer_address=bytes.fromhex(h["proposer_address"]),
    )


def commit_from_rpc(c: dict[str, Any]) -> cometbft.Commit:
    """A Commit from the `commit` object of CometBFT's /commit answer."""
    return cometbft.Commit(
        height=int(c["height"]),
        round=int(c["round"]),
        block_id=_block_id_from_rpc(c["block_id"]),
        signatures=[
            cometbft.CommitSig(
                flag=int(s["block_id_flag"]),
                validator_address=bytes.fromhex(s.get("validator_address") or ""),
                time=parse_time(s["timestamp"]) if s.get("timestamp") else NO_TIME,
                signature=base64.b64decode(s.get("signature") or ""),
            )
            for s in c["signatures"]
        ],
    )


def validators_from_rpc(validators: list[dict[str, Any]]) -> list[cometbft.Validator]:
    """The set from CometBFT's /validators answer (or genesis `validators`)."""
    out = []
    for v in validators:
        if v["pub_key"]["type"] != ED25519_KEY_TYPE:
            raise UnsupportedValidatorKey(
                f"validator {v.get('address', '?')} has a {v['pub_key']['type']} key: the "
                "regulator chain checks ed25519 validators only (CometBFT's default key type); "
                "run the business network with ed25519 validator keys"
            )
        power = v["voting_power"] if "voting_power" in v else v["power"]
        out.append(cometbft.Validator(base64.b64decode(v["pub_key"]["value"]), int(power)))
    return cometbft.ordered(out)
