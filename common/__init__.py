"""Helpers every package shares: one-line user errors, shape checks, atomic writes, digests, the command line."""
