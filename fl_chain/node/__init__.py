"""What a node runs: the flchain mod, flchain's ClientApp, signed-update claims, the inclusion check,
simulated keys, the capacity benchmark.
"""
