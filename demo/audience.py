"""A synthetic, deterministic campaign audience, committed as ``data/audience.csv``.

Profiles come from a seeded ``random.Random``, so the CSV can be regenerated exactly
(``python -m demo.audience --write``) and a test checks that
the committed file still matches. Few distinct zip codes serve many profiles, so a DAG
that calls the coupon API once per zip code, not once per profile, visibly saves calls.
Every address is under ``@example.com`` (RFC 2606): nothing can reach a real mailbox.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

AUDIENCE_CSV = Path(__file__).parent / "data" / "audience.csv"
AUDIENCE_SIZE = 1200
SEED = 2026
COLUMNS = ("id", "email", "first_name", "locale", "zip", "region", "segment", "email_consent")
CONSENT_RATE = 0.85

LOCALES = ("it", "fr", "nl", "en")
REGIONS = ("north", "south", "east", "west", "central")
SEGMENTS = ("gold", "silver", "bronze")
_LOCALE_WEIGHTS = (35, 25, 15, 25)
_SEGMENT_WEIGHTS = (15, 35, 50)

ZIPS: dict[str, tuple[tuple[str, str], ...]] = {
    # Milan, Milan, Turin, Bologna, Rome, Rome, Florence, Naples, Palermo
    "it": (
        ("20121", "north"),
        ("20122", "north"),
        ("10121", "north"),
        ("40121", "north"),
        ("00184", "central"),
        ("00186", "central"),
        ("50122", "central"),
        ("80132", "south"),
        ("90133", "south"),
    ),
    # Paris, Paris, Lille, Lyon, Strasbourg, Marseille, Bordeaux
    "fr": (
        ("75001", "central"),
        ("75008", "central"),
        ("59000", "north"),
        ("69001", "east"),
        ("67000", "east"),
        ("13001", "south"),
        ("33000", "west"),
    ),
    # Amsterdam, Amsterdam, Rotterdam, Utrecht, Groningen, Eindhoven
    "nl": (
        ("1012", "west"),
        ("1017", "west"),
        ("3011", "west"),
        ("3511", "central"),
        ("9711", "north"),
        ("5611", "south"),
    ),
    # London, London, Manchester, Leeds, Birmingham, Bristol, Norwich (UK outward codes)
    "en": (
        ("SW1A", "south"),
        ("EC1A", "south"),
        ("M1", "north"),
        ("LS1", "north"),
        ("B1", "central"),
        ("BS1", "west"),
        ("NR1", "east"),
    ),
}
"""Zip codes per locale, each with the one sales region it belongs to."""

FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "it": ("Giulia", "Marco", "Francesca", "Luca", "Chiara", "Alessandro", "Sofia", "Matteo", "Niccolò", "Elena"),
    "fr": ("Chloé", "Louis", "Léa", "Hugo", "Camille", "Théo", "Manon", "Jules", "Inès", "Gabriel"),
    "nl": ("Daan", "Emma", "Sem", "Julia", "Lucas", "Tess", "Finn", "Zoë", "Bram", "Sanne"),
    "en": ("Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Emily", "Charlie", "Grace"),
}


class Profile(TypedDict):
    """One audience row, typed."""

    id: int
    email: str
    first_name: str
    locale: str
    zip: str
    region: str
    segment: str
    email_consent: bool


def _ascii_slug(name: str) -> str:
    """``Niccolò`` -> ``niccolo``: accents stay in the name, addresses stay plain ASCII."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


def generate_audience(size: int = AUDIENCE_SIZE, seed: int = SEED) -> list[Profile]:
    """Generate ``size`` profiles; the same arguments always give the same profiles."""
    rng = random.Random(seed)
    profiles: list[Profile] = []
    for number in range(1, size + 1):
        locale = rng.choices(LOCALES, weights=_LOCALE_WEIGHTS)[0]
        zip_code, region = rng.choice(ZIPS[locale])
        first_name = rng.choice(FIRST_NAMES[locale])
        profiles.append(
            Profile(
                id=number,
                email=f"{_ascii_slug(first_name)}.{number:05d}@example.com",
                first_name=first_name,
                locale=locale,
                zip=zip_code,
                region=region,
                segment=rng.choices(SEGMENTS, weights=_SEGMENT_WEIGHTS)[0],
                email_consent=rng.random() < CONSENT_RATE,
            )
        )
    return profiles


def render_csv(profiles: Sequence[Profile]) -> str:
    """The CSV text of ``profiles``: a header row, ``\\n`` line ends, consent as ``true``/``false``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for profile in profiles:
        writer.writerow({**profile, "email_consent": "true" if profile["email_consent"] else "false"})
    return out.getvalue()


def load_audience(path: Path | None = None) -> list[Profile]:
    """Read an audience CSV (the committed one by default) into typed profiles."""
    with (path or AUDIENCE_CSV).open(encoding="utf-8", newline="") as handle:
        return [
            Profile(
                id=int(row["id"]),
                email=row["email"],
                first_name=row["first_name"],
                locale=row["locale"],
                zip=row["zip"],
                region=row["region"],
                segment=row["segment"],
                email_consent=row["email_consent"] == "true",
            )
            for row in csv.DictReader(handle)
        ]


def main(argv: Sequence[str] | None = None) -> None:
    """Print the generated CSV, or with ``--write`` regenerate the committed file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help=f"write {AUDIENCE_CSV} instead of printing")
    args = parser.parse_args(argv)
    text = render_csv(generate_audience())
    if args.write:
        AUDIENCE_CSV.parent.mkdir(parents=True, exist_ok=True)
        AUDIENCE_CSV.write_text(text, encoding="utf-8", newline="")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
