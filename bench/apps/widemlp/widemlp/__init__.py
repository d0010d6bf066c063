"""A wide MLP of a chosen parameter count on synthetic data (bench/model_size.py)."""
