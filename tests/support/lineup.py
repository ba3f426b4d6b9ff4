"""A nested line-up document (match → teams → players), as a football API returns it, and its mapping."""

from __future__ import annotations

from typing import Any


def lineup(players_per_team: int = 12) -> dict[str, Any]:
    """Tonight's match: two teams of ``players_per_team`` players (24 player rows by default)."""
    teams = []
    for side, name in (("home", "Inter"), ("away", "Milan")):
        players = [
            {
                "name": f"{name} Player {number}",
                "number": number,
                "position": ("GK", "DF", "MF", "FW")[number % 4],
                "captain": number == 1,
                "born": 946684800 + number * 86400 * 30,
            }
            for number in range(1, players_per_team + 1)
        ]
        teams.append({"side": side, "name": name, "coach": f"{name} Coach", "players": players})
    return {
        "match": {
            "id": "M-2026-1201",
            "competition": "Serie A",
            "kickoff": "2026-12-01T19:45:00Z",
            "venue": {"name": "San Siro", "city": "Milano"},
            "teams": teams,
        }
    }


PLAYERS: dict[str, Any] = {
    "records": "$.match.teams[*].players[*]",
    "columns": [
        {"name": "player", "path": "name", "type": "text"},
        {"name": "number", "path": "number", "type": "integer"},
        {"name": "position", "path": "position", "type": "text"},
        {"name": "team", "path": "%.name", "type": "text"},
        {"name": "kickoff", "path": "$$.match.kickoff", "type": "datetime", "timezone": "Europe/Rome"},
    ],
}
"""The players table: each player with the team name (its enclosing record) and the kick-off (the root)."""

MATCH: dict[str, Any] = {
    "records": "$.match",
    "columns": [
        {"name": "id", "path": "id", "type": "text"},
        {"name": "competition", "path": "competition", "type": "text"},
        {"name": "venue", "path": "venue.name", "type": "text"},
        {"name": "kickoff", "path": "kickoff", "type": "datetime"},
    ],
}
