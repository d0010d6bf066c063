"""What every party must agree on, pure: join statement, update signing, manifests and outcome/checkpoint
documents, Merkle trees, task identity, fixed point, the reputation reference model, canonical model
bytes. No web3 connection, no flwr.
"""
