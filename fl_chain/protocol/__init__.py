"""What every party must agree on, pure: join statement, update signing, the fields they exchange, the
documents published beside a round's model (verified-round manifests, outcome and checkpoint leaves),
Merkle trees, task identity, fixed point, the reputation reference model, canonical model
bytes. No web3 connection, no flwr.
"""
