"""Resilience suite (a package so its module names cannot clash with same-named unit tests)."""
