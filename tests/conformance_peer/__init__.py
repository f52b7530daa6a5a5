"""A second opinion on the local cloud: the scenarios its conformance tests rely on, run against the local
cloud and against MiniStack, each observation set beside what AWS documents (`make conformance-peer`).

Never imported by deployed code or by the local cloud; `python -m tests.conformance_peer --help` runs it.
"""
