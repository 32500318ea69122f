"""Chaos harness: real clients through the fault-injecting proxy, every result verified.

``python -m harness.chaos`` is the command line; ``harness.chaos.run_chaos`` the same run as an
API. Nothing is imported here, so ``python -m harness.chaos`` runs the module exactly once.
"""
