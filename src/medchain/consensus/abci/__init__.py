"""ABCI++ (CometBFT v0.38) socket server in front of the MedChain Application."""
