"""Reporting: what people read of a benchmark or an audit.

``ranking``, ``pages`` and ``frontier`` render the protocol-v2 leaderboard (matched-utility
ranking, the per-suite detail page, frontier figures); ``audit_report`` renders the report of
``mia-bench audit-release``.
"""
