"""Close-match suggestions for mistyped names: "did you mean 'allow_private_hosts'?". Pure."""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice to ``name``, or an empty string when none is close."""
    matches = get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def unknown_keys_message(unknown: Iterable[str], allowed: Iterable[str]) -> str:
    """Name each unknown key with its closest allowed key, then list the allowed ones."""
    allowed = sorted(allowed)
    named = ", ".join(f"{key!r}{did_you_mean(key, allowed)}" for key in sorted(unknown))
    return f"unknown key {named}; allowed: {', '.join(allowed)}"
