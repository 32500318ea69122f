"""Deliberately broken implementations: the conformance suite must catch them."""
