"""The cross-chain swap from the shell, as two parties and a relayer would run it
against two real solo networks (test_htlc's): the patient offers records on B with
`medchain htlc lock --secret`, the buyer answers on A with `--counterpart-*` (its
chain checks the offer through the light client), the patient claims the tokens
with the secret file, the relayer carries the preimage in one `relay --once`
round; a second swap the buyer completes itself with `claim --from-node`."""

from __future__ import annotations

from pathlib import Path

from support.cli_node import CliNode, ok, run, save_keys
from test_htlc import Swap, swap

from medchain.contracts.htlc import model as hm
from medchain.contracts.token import model as tm

__all__ = ["swap"]


def cli(s: Swap, home: Path, url: str) -> CliNode:
    return CliNode(url, home, s.keys)


def test_a_swap_from_the_shell(swap: Swap, tmp_path: Path) -> None:
    s = swap
    home = tmp_path / "home"
    save_keys(home, s.keys)
    on_a, on_b = cli(s, home, s.a.url), cli(s, home, s.b.url)
    secret = tmp_path / "secret.json"
    ok(
        run(
            on_b,
            *("htlc", "lock", "cli-1", "--recipient", s.did("buyer"), "--records", "rec-b1"),
            *("--timeout-blocks", "40", "--secret", str(secret), "--key", "patient"),
        )
    )
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    paid_from = s.balance("buyer")
    ok(
        run(
            on_a,
            *("htlc", "lock", "cli-1", "--recipient", s.did("patient"), "--tokens", "150"),
            *("--timeout-blocks", "10", "--counterpart-node", s.b.url),
            *("--counterpart-lock", "cli-1", "--key", "buyer"),
        )
    )
    assert s.balance("buyer") == paid_from - 150
    # A claim with a secret that is not the lock's is refused, with the chain's reason.
    wrong = run(on_a, "htlc", "claim", "cli-1", "--preimage", "00" * 32, "--key", "patient")
    assert wrong.returncode != 0 and "INVALID_PROOF" in wrong.stdout + wrong.stderr
    ok(run(on_a, "htlc", "claim", "cli-1", "--secret", str(secret), "--key", "patient"))
    assert tm.balance(s.a.state, s.did("patient")) >= 150
    relay = ("htlc", "relay", "--a", s.a.url, "--b", s.b.url, "--key", "relayer", "--once")
    assert ok(run(on_a, *relay))["sent"] >= 1
    assert ok(run(on_b, "htlc", "show", "cli-1"))["status"] == hm.CLAIMED
    terms = ok(run(on_b, "htlc", "show", "cli-1", "--key", "buyer"))
    assert terms["recipient"] == s.did("buyer") and terms["grant_id"]
    stranger = run(on_b, "htlc", "show", "cli-1", "--key", "relayer")
    assert stranger.returncode != 0


def test_the_buyer_completes_without_a_relayer(swap: Swap, tmp_path: Path) -> None:
    s = swap
    home = tmp_path / "home"
    save_keys(home, s.keys)
    on_a, on_b = cli(s, home, s.a.url), cli(s, home, s.b.url)
    secret = tmp_path / "secret.json"
    ok(
        run(
            on_b,
            *("htlc", "lock", "cli-2", "--recipient", s.did("buyer"), "--records", "rec-b2"),
            *("--timeout-blocks", "40", "--secret", str(secret), "--key", "patient"),
        )
    )
    ok(
        run(
            on_a,
            *("htlc", "lock", "cli-2", "--recipient", s.did("patient"), "--tokens", "10"),
            *("--timeout-blocks", "10", "--counterpart-node", s.b.url),
            *("--counterpart-lock", "cli-2", "--key", "buyer"),
        )
    )
    early = run(on_b, "htlc", "claim", "cli-2", "--from-node", s.a.url, "--key", "buyer")
    assert early.returncode != 0  # nothing claimed on A yet: no preimage to read
    ok(run(on_a, "htlc", "claim", "cli-2", "--secret", str(secret), "--key", "patient"))
    ok(run(on_b, "htlc", "claim", "cli-2", "--from-node", s.a.url, "--key", "buyer"))
    assert s.b.state(hm.lock_key("cli-2"))["status"] == hm.CLAIMED
