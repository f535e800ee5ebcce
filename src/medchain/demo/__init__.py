"""`medchain demo`: a small consortium doing real transactions on a real node.

Two hospitals, a pharmacy and a regulator join; staff are added by their
org admins; patients register themselves; a doctor rotates a key; a nurse is
suspended then revoked. Then health records: PUMCH's edge stores a patient's
lab result and prescription encrypted; the patient grants a Ruijin doctor,
who fetches and decrypts the result; the patient revokes and the next request
is refused; a pharmacist sees the prescription but not the lab result; an
emergency needs a second approver; an erased record yields a purge receipt;
the patient reads who accessed what. Along the way the chain refuses a
replay, a stale key, a revoked member and unauthorised actions, and the demo
shows each refusal with its error code.

One module per story (consortium, records, interop, supply_chain, regulator),
run.py for the cast and DemoRun they share, driver.py to run them in order.

Layer: demo, at the top beside the CLI. Imports node, network, edge, gateway, sdk,
gs1, contracts, core, crypto and exceptions; only the CLI's `medchain demo`
command imports it.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""

from medchain.demo.driver import run_demo

__all__ = ["run_demo"]
