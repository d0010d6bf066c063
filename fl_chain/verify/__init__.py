"""Checking what others published: round and checkpoint checks, the audit, the validator."""
