"""Leaderboard reports of protocol-v2 suites: matched-utility ranking, pages and frontier figures."""
