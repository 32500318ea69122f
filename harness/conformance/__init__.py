"""The NSP conformance suite: ``python -m harness.conformance {server,client}``.

It judges any NSP server or client case by case against spec/PROTOCOL.md and
spec/STORE-REDIS.md, in the manner of h2spec and the Autobahn testsuite; see
``python -m harness.conformance --help`` and the README.
"""
