"""Health and Prometheus metrics of a node, an edge and a relay.

Each app instance owns its own `prometheus_client.CollectorRegistry` (never the
process-wide default), so several nodes in one process (tests, the demo) keep
separate counts. Chain counters are fed from what a node committed: the engines
call a block listener after each Commit (consensus/solo.py, consensus/abci/server.py)
and `ChainMetrics.observe_block` counts the committed block's results. Core and
contracts know nothing of metrics.

Layer: metrics. Imports core (the committed block and tx decoding) and exceptions;
the gateway, the edge, the node wiring, the relay and the CLI import it.
"""
