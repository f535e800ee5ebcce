"""Proofs bound to headers that CometBFT's own light client verified.

A proof document (core/proofs.py) hashes up to an app hash; on its own that
only says the node that served it was consistent. What makes it evidence is
an app hash from a header that more than 2/3 of the voting power of a
validator set signed, where the verifier followed that set from a root it
trusts (a height and a header hash taken out of band, e.g. from genesis).

We do not re-implement that check: `cometbft light` (CometBFT's light client
as a verifying RPC proxy, the same code its full nodes use for state sync)
runs for the duration of one verification. It starts from the trusted root,
verifies headers by skipping verification (trust level 1/3, trusting period)
or sequentially, cross-checks the primary against witnesses, and its
`/commit` answers only with a signed header it has verified. We read that
header's `app_hash` and check the proof against it.

Header H carries the app hash after executing block H-1, so a proof of the
state after block h is checked against header h+1.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from medchain.core import proofs
from medchain.exceptions import MedChainError
from medchain.network import cometbft as cmt

DEFAULT_TRUST_LEVEL = "1/3"
DEFAULT_TRUSTING_PERIOD = "168h"


class LightClientError(MedChainError, RuntimeError):
    """The light client could not verify a header: wrong root, another chain,
    too little voting power, a conflicting witness, or no node answered."""


@dataclass(frozen=True)
class TrustRoot:
    """Where the verifier's trust starts: a header height and its hash."""

    height: int
    hash: bytes


@dataclass(frozen=True)
class VerifiedHeader:
    """The parts of a light-client-verified header that a proof is checked against."""

    chain_id: str
    height: int
    hash: bytes
    app_hash: bytes
    validators_hash: bytes
    signatures: int


@dataclass(frozen=True)
class BoundProof:
    """A proof that checked out against a verified header."""

    what: str
    header: VerifiedHeader


class LightProxy:
    """`cometbft light` running as a verifying RPC proxy for one chain.

    Use as a context manager; the proxy process and its throwaway light-client
    database go away on exit. Witnesses cross-check the primary (CometBFT
    requires at least one; with none, the primary is its own witness and only
    the signatures are checked).
    """

    def __init__(
        self,
        chain_id: str,
        primary: str,
        trust: TrustRoot,
        witnesses: tuple[str, ...] = (),
        trust_level: str = DEFAULT_TRUST_LEVEL,
        trusting_period: str = DEFAULT_TRUSTING_PERIOD,
        sequential: bool = False,
        start_timeout: float = 30.0,
    ) -> None:
        self.chain_id = chain_id
        self.primary = primary
        self.trust = trust
        self.witnesses = witnesses or (primary,)
        self.trust_level = trust_level
        self.trusting_period = trusting_period
        self.sequential = sequential
        self.start_timeout = start_timeout
        self.url = ""
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LightProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the proxy; returns once it serves, or raises with its log."""
        self._dir = Path(tempfile.mkdtemp(prefix="medchain-light-"))
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        args = [
            cmt.binary(),
            "light",
            self.chain_id,
            "--home",
            str(self._dir / "cometbft"),
            "--home-dir",
            str(self._dir / "light"),
            "--laddr",
            f"tcp://127.0.0.1:{port}",
            "-p",
            self.primary,
            "-w",
            ",".join(self.witnesses),
            "--height",
            str(self.trust.height),
            "--hash",
            self.trust.hash.hex().upper(),
            "--trusting-period",
            self.trusting_period,
        ]
        args += ["--sequential"] if self.sequential else ["--trust-level", self.trust_level]
        log = (self._dir / "light.log").open("wb")
        self._proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LightClientError(f"light client refused to start: {self._log_tail()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise LightClientError(f"light client did not start: {self._log_tail()}")

    def close(self) -> None:
        """Stop the proxy process and remove its database."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def header(self, height: int, wait: float = 0.0) -> VerifiedHeader:
        """The header at `height`, verified by the light client; waits up to
        `wait` seconds for the chain to reach it."""
        deadline = time.monotonic() + wait
        dropped = 0
        while True:
            try:
                result = self._call("commit", height=height)
                break
            except LightClientError as e:
                # Not yet committed, or the proxy dropped a call that outlived its
                # write timeout (it keeps the headers it verified meanwhile, so the
                # next call goes further): ask again until `wait` runs out, and
                # after a drop at least a few times more.
                if not _transient(e):
                    raise
                dropped += "too high" not in str(e)
                if time.monotonic() >= deadline and not 0 < dropped <= _DROPS_RETRIED:
                    raise
                time.sleep(0.3)
        signed = result["signed_header"]
        head, commit = signed["header"], signed["commit"]
        header = VerifiedHeader(
            chain_id=str(head["chain_id"]),
            height=int(head["height"]),
            hash=bytes.fromhex(commit["block_id"]["hash"]),
            app_hash=bytes.fromhex(head["app_hash"]),
            validators_hash=bytes.fromhex(head["validators_hash"]),
            signatures=sum(1 for s in commit["signatures"] if s.get("signature")),
        )
        if header.chain_id != self.chain_id or header.height != height:
            raise LightClientError(
                f"asked for {self.chain_id} height {height}, got {header.chain_id} "
                f"height {header.height}"
            )
        return header

    def _call(self, method: str, **params: Any) -> Any:
        if self._proc is None or self._proc.poll() is not None:
            raise LightClientError(f"light client is not running: {self._log_tail()}")
        try:
            r = httpx.get(f"{self.url}/{method}", params=params, timeout=30)
            body = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise LightClientError(f"light client {method}: {e}") from None
        if "error" in body:
            err = body["error"]
            raise LightClientError(f"{method}: {err.get('data') or err.get('message')}")
        return body["result"]

    def _log_tail(self) -> str:
        if self._dir is None or not (self._dir / "light.log").exists():
            return "(no log)"
        lines = (self._dir / "light.log").read_text(errors="replace").strip().splitlines()
        errors = [ln for ln in lines if "ERR" in ln or "rror" in ln]
        return " | ".join((errors or lines)[-3:])[-1500:]


_DROPS_RETRIED = 3
"""Dropped calls asked again even after `wait` has run out."""


def _transient(error: LightClientError) -> bool:
    """Whether asking the proxy again may succeed: the height is not committed yet,
    or the connection to the proxy broke (it gives up on a slow primary that way)."""
    text = str(error)
    return "too high" in text or "disconnected" in text or "timed out" in text


def verify_proof(
    doc: dict[str, Any],
    primary: str,
    trust: TrustRoot,
    witnesses: tuple[str, ...] = (),
    wait: float = 30.0,
) -> BoundProof:
    """Check a medchain-proof/v1 document against the app hash of the header at
    its height + 1, as verified by CometBFT's light client from `trust`.

    Raises proofs.BadProof when the proof does not match the verified header,
    LightClientError when no header could be verified.
    """
    try:
        chain_id, height = str(doc["chain_id"]), int(doc["height"])
    except (KeyError, TypeError, ValueError) as e:
        raise proofs.BadProof(f"malformed proof: {e}") from None
    proofs.verify(doc)  # a malformed or inconsistent document fails before any network call
    with LightProxy(chain_id, primary, trust, witnesses) as proxy:
        header = proxy.header(height + 1, wait=wait)
    try:
        what = proofs.verify(doc, header.app_hash)
    except proofs.BadProof as e:
        raise proofs.BadProof(
            f"{e}: header {header.height} of {header.chain_id}, signed by the validators "
            f"the light client followed, has app hash {header.app_hash.hex()}"
        ) from None
    return BoundProof(what, header)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
