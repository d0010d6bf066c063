"""Attacks and collusion harnesses for experiments and tests; never imported by production code paths."""
