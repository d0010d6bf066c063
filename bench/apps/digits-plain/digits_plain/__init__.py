"""flchain's built-in digits task (model, IID partitions, local SGD, test split) as a plain Flower App:
no ledger, no join gate, no mod, no root training (bench/server_path.py's baseline)."""
