"""What only the coordinator runs: ChainStrategy and its round pipeline, the join gate, grids, reply
screening, policies, the committer and its per-mode round writers, the ledger session, flchain's
ServerApp.
"""
