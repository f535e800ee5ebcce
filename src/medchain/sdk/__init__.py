"""What an integrator uses: the node client (signed reads, tx submission),
the encrypted keystore and TLS trust. Imports core, crypto, encoding and the
edge's request signing; never the node, gateway or CLI.
"""
