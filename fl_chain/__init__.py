"""flchain: federated learning on Flower with on-chain accounting on Ethereum."""

__version__ = "0.1.0"
