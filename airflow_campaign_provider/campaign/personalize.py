"""Render one localized message per profile from a folder of Jinja2 templates.

Template convention: a template set is a folder with one file per locale, ``<dir>/<locale>.j2``
(``it.j2``, ``fr.j2``, ``nl.j2``, ``en.j2``). The first rendered line is ``Subject: ...``; the rest,
after optional blank lines, is the plain-text body. With ``variant_field``, each profile picks the
sub-folder named by that field (``weather/rain/it.j2``), so one campaign can carry several messages.

A template sees the shared ``context`` and then every field of the profile, so ``{{ first_name }}``
and ``{{ coupon_code }}`` (from :func:`~.audience.join_by`) work; a profile field wins over a context
entry of the same name. Templates are marketing content, not code: they run in Jinja's sandbox,
and an undefined variable fails loudly instead of rendering as an empty string.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypedDict

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from airflow_campaign_provider.campaign.errors import CampaignError

SUBJECT_PREFIX = "Subject:"
_UNDEFINED_NAME = re.compile(r"'([^']*)' is undefined|has no attribute '([^']*)'")


class Message(TypedDict):
    """One rendered message; plain JSON, so a list of them goes through XCom."""

    profile_id: str
    to: str
    locale: str
    subject: str
    body: str
    consent: bool


class PersonalizationError(CampaignError):
    """A template set cannot render a profile's message; a mistake in the templates or the data."""

    rule = "personalization"


class TemplateNotFoundError(PersonalizationError):
    """Neither the profile's locale nor the default locale has a template in the set."""

    rule = "template not found"


class TemplateVariableError(PersonalizationError):
    """A template uses a variable that neither the profile nor the context defines.

    :ivar template: the template's path inside the template set, e.g. ``fr.j2``.
    :ivar variable: the undefined name (a variable, or an attribute of one).
    """

    rule = "undefined template variable"

    def __init__(self, template: str, detail: str, profile_id: str) -> None:
        self.template = template
        found = _UNDEFINED_NAME.search(detail)
        self.variable = next((name for name in found.groups() if name), detail) if found else detail
        super().__init__(f"Template {template!r} uses an undefined variable for profile {profile_id}: {detail}")


class TemplateRenderError(PersonalizationError):
    """A template has a syntax error, breaks the sandbox, or has no ``Subject:`` first line."""

    rule = "template render"


def personalize(
    profiles: Iterable[Mapping[str, Any]],
    template_dir: str | os.PathLike[str],
    *,
    context: Mapping[str, Any] | None = None,
    variant_field: str | None = None,
    default_locale: str = "en",
    consent_field: str = "email_consent",
) -> list[Message]:
    """One message per profile, in profile order.

    The locale is the profile's ``locale`` (``"fr-BE"`` tries ``fr-be`` then ``fr``), else
    ``default_locale``; the message's ``locale`` is the template actually used. Profiles
    need ``id`` and ``email``; ``consent`` is copied from ``consent_field`` (True only if exactly True)
    so that :func:`~.delivery.deliver` can enforce it.

    :raises TemplateNotFoundError: no template for the locale, nor for ``default_locale``.
    :raises TemplateVariableError: a template uses a variable the profile and ``context`` lack.
    :raises TemplateRenderError: a template does not compile, breaks the sandbox or lacks the subject line.
    """
    root = Path(template_dir)
    available = {path.relative_to(root).as_posix() for path in root.rglob("*.j2")}
    env = SandboxedEnvironment(
        loader=FileSystemLoader(root),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    messages: list[Message] = []
    for profile in profiles:
        profile_id = str(profile["id"])
        variant = str(profile[variant_field]) if variant_field else None
        name, locale = _pick_template(available, variant, str(profile.get("locale") or ""), default_locale, root)
        try:
            text = env.get_template(name).render({**(context or {}), **profile})
        except UndefinedError as err:
            raise TemplateVariableError(name, err.message or str(err), profile_id) from err
        except TemplateError as err:
            raise TemplateRenderError(
                f"Template {name!r} in {str(root)!r} failed for profile {profile_id}: {err}"
            ) from err
        subject, body = _split_subject(text, name)
        messages.append(
            Message(
                profile_id=profile_id,
                to=str(profile["email"]),
                locale=locale,
                subject=subject,
                body=body,
                consent=profile.get(consent_field) is True,
            )
        )
    return messages


def _pick_template(
    available: set[str], variant: str | None, locale: str, default_locale: str, root: Path
) -> tuple[str, str]:
    """The template name and its locale; names come from the folder listing, so data cannot reach other files."""
    wanted = locale.lower()
    for candidate in (wanted, re.split(r"[-_]", wanted)[0], default_locale):
        name = f"{variant}/{candidate}.j2" if variant is not None else f"{candidate}.j2"
        if candidate and name in available:
            return name, candidate
    where = f"{root / variant}" if variant is not None else str(root)
    raise TemplateNotFoundError(f"No template for locale {locale!r} nor {default_locale!r} in {where!r}")


def _split_subject(text: str, name: str) -> tuple[str, str]:
    first, _, rest = text.partition("\n")
    if not first.startswith(SUBJECT_PREFIX):
        raise TemplateRenderError(f"Template {name!r} must start with a {SUBJECT_PREFIX!r} line")
    # Collapsing whitespace also removes CR and other line breaks that profile data could smuggle into the header.
    subject = " ".join(first[len(SUBJECT_PREFIX) :].split())
    if not subject:
        raise TemplateRenderError(f"Template {name!r} renders an empty subject")
    return subject, rest.lstrip("\n").rstrip()
