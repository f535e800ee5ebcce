"""One server's limits per client, as configuration: the dataclass the command line,
medchain.toml and the servers share, apart from their enforcement (limits.py) so a
`medchain` command that reads flags does not load the web framework."""

from __future__ import annotations

from dataclasses import dataclass

UNLIMITED = 0


@dataclass(frozen=True)
class Limits:
    """One server's limits per client. A rate or count of 0 means unlimited.

    The defaults let a person, a hospital's edge or a relay work normally from
    one address (bursts of a few hundred requests, dozens in flight) and stop
    one address from taking the whole server. Load tests and benches that
    drive thousands of requests from 127.0.0.1 pass `Limits.unlimited()`.
    """

    rate: float = 50.0
    """Requests per second one client address may sustain."""
    burst: int = 200
    """Requests one client address may send at once before `rate` applies."""
    concurrency: int = 64
    """Requests one client address may have in flight at once."""
    signer_rate: float = 50.0
    """Requests per second one verified signing key may sustain, from any address."""
    signer_burst: int = 200
    max_waits: int = 16
    """Transaction waits (POST /v1/txs/wait, ?wait=true) one address may hold open."""
    max_wait_seconds: float = 10.0
    """The longest one wait is held; a client asks again for what is still pending."""
    self_registration_rate: float = 30.0
    """identity.register_patient txs per minute accepted from one client address."""
    self_registration_burst: int = 20
    self_registration_gateway_rate: float = 600.0
    """identity.register_patient txs per minute accepted by this gateway in all."""
    self_registration_gateway_burst: int = 100

    @classmethod
    def unlimited(cls) -> Limits:
        """No rate, concurrency or self-registration limit (body caps and the wait
        cap still hold): for benches and load tests that flood on purpose."""
        return cls(
            rate=UNLIMITED,
            burst=0,
            concurrency=UNLIMITED,
            signer_rate=UNLIMITED,
            signer_burst=0,
            max_waits=UNLIMITED,
            self_registration_rate=UNLIMITED,
            self_registration_burst=0,
            self_registration_gateway_rate=UNLIMITED,
            self_registration_gateway_burst=0,
        )
