"""Processes between nodes and chains: CometBFT configuration and the node
process (cometbft.py), a local multi-validator network (localnet.py), and the
relay that feeds the regulator chain (relay.py). Imports the SDK and the
layers below it; not the CLI or the demo.
"""
