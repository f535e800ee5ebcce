"""Sign and verify speed and sizes of every crypto suite, in one run.

    .venv/bin/python bench/suites.py [--seconds 1.0] [--json]

For each suite (sm, intl, sm9, pq, sm2+mldsa): signatures per second,
verifications per second, public key, private key and signature bytes. "sm"
(SM2) is the baseline the others are compared with. The sm9 key comes from a
KGC made for the run (its public key is the master public key plus the DID).
"""

from __future__ import annotations

import argparse
import json
import time

from medchain import crypto
from medchain.crypto import sm9
from medchain.crypto.suites import sm9_private_key

MESSAGE = b"a 200-byte envelope " * 10
SUITES = ["sm", "intl", "sm9", "pq", "sm2+mldsa"]


def _key(suite: str) -> crypto.KeyPair:
    if suite != "sm9":
        return crypto.generate_keypair(suite)
    ks = sm9.generate_master_secret()
    did = "did:medchain:bench-member-0001"
    enc_key = sm9.extract_enc_key(sm9.generate_master_secret(), did.encode())
    sign_key = sm9.extract_sign_key(ks, did.encode())
    private = sm9_private_key(sign_key, sm9.master_public(ks), did, enc_key)
    return crypto.keypair_from_private("sm9", private)


def _rate(op: object, seconds: float) -> float:
    assert callable(op)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 3:
        op()
        n += 1
    return n / elapsed


def measure(suite: str, seconds: float) -> dict[str, object]:
    """One suite's numbers: ops per second and sizes in bytes."""
    key = _key(suite)
    sig = crypto.sign(key, MESSAGE)
    assert crypto.verify(suite, key.public, MESSAGE, sig)
    return {
        "suite": suite,
        "sign_per_s": round(_rate(lambda: crypto.sign(key, MESSAGE), seconds), 1),
        "verify_per_s": round(
            _rate(lambda: crypto.verify(suite, key.public, MESSAGE, sig), seconds), 1
        ),
        "public_key_bytes": len(key.public),
        "private_key_bytes": len(key.private),
        "signature_bytes": len(sig),
    }


def main() -> None:
    """Measure every suite and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(s, args.seconds) for s in SUITES]
    base = rows[0]
    for row in rows:
        row["verify_vs_sm"] = round(float(row["verify_per_s"]) / float(base["verify_per_s"]), 3)  # type: ignore[arg-type]
    if args.json:
        print(json.dumps({"message_bytes": len(MESSAGE), "suites": rows}, indent=2))
        return
    head = ("suite", "sign/s", "verify/s", "vs sm", "pub B", "priv B", "sig B")
    print(f"{head[0]:<10} " + " ".join(f"{h:>9}" for h in head[1:]))
    for r in rows:
        print(
            f"{r['suite']!s:<10} {r['sign_per_s']!s:>9} {r['verify_per_s']!s:>9} "
            f"{r['verify_vs_sm']!s:>9} {r['public_key_bytes']!s:>9} "
            f"{r['private_key_bytes']!s:>9} {r['signature_bytes']!s:>9}"
        )


if __name__ == "__main__":
    main()
