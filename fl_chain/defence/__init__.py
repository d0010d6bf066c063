"""The robust-aggregation maths, numpy only: vectors, trust, anchor, evidence, influence, scoring,
selection, update checks, deterministic derivation.
"""
