"""The schemas between processes: Flower message records, run reports, the server's run spec, a node's
config.
"""
