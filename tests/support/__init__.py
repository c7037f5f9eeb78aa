"""Helpers the tests share: plain modules, imported by tests and conftests alike.

``emulators`` (the session's emulators, started by the ``emulators`` fixture of tests/conftest.py),
``tap`` (the tap's test settings and an in-process run), ``target`` (the target's), ``editor``
(an editor served in-process), ``project`` (the checkout's Meltano project: plugins installed
once, a `.meltano` of a test process's own, a fresh-clone-like copy), ``expected`` (what
Amplitude must hold after a run), ``shards`` (the shard and Dagster tests' mapping and state).
"""
