"""Putting contracts on a chain: compile, deploy, a local node, a whole local federation's chain in one
call.
"""
