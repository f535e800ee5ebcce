"""`medchain gov` from the shell against a solo node of a vote-mode chain: a hospital
admin proposes a validator, three hospitals vote, execute inside the vote is refused,
list and show the tally; a malformed --action is refused before anything is sent."""

from __future__ import annotations

from pathlib import Path

from support.cli_node import CliNode, ok, run, save_keys, serving
from test_governance import ORGS, VotingLedger

from medchain import crypto


def test_propose_vote_list_show_from_the_shell(tmp_path: Path) -> None:
    admins = {org: crypto.generate_keypair() for org in ORGS}
    chain = VotingLedger(tmp_path / "chain.db", crypto.generate_keypair(), admins)
    keys = {org.replace("-", "_"): k for org, k in admins.items()}
    save_keys(tmp_path / "home", keys)
    with serving(chain) as url:
        node = CliNode(url, tmp_path / "home", keys)
        action = '{"kind": "set_validator", "pub_key": "' + "ab" * 32 + '", "power": 1}'
        ok(run(node, "gov", "propose", "--action", action, "--key", "hosp-a"))
        for org in ORGS[:3]:
            ok(run(node, "gov", "vote", "1", "yes", "--key", org))
        early = run(node, "gov", "execute", "1", "--key", "hosp-d")
        assert early.returncode != 0 and "still under vote" in early.stdout + early.stderr
        rows = ok(run(node, "gov", "list", "--key", "hosp-d"))
        assert [(p["proposal_id"], p["phase"]) for p in rows] == [(1, "voting")]
        shown = ok(run(node, "gov", "show", "1", "--key", "hosp-b"))
        assert shown["tally"] == {"yes": 300, "no": 0, "abstain": 0}
        assert shown["outcome_now"] == "accepted"
        bad = run(node, "gov", "propose", "--action", "[1]", "--key", "hosp-a")
        assert bad.returncode != 0 and "--action" in bad.stdout + bad.stderr
