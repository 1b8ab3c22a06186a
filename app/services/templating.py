"""Campaign templates as the app uses them: limits from the settings, the context of one
recipient, and the checks at creation and import that keep template problems from
surfacing at send time.

What is checked whenever recipients are added (creation or a later import), under the
same limits as a send:

1. a render with every field the campaign has set to a sample value: a variable that
   no recipient has (and that is not a built-in) is a 422 naming the template and the
   variable, unless the template guards it (`| default`, `is defined`);
2. the same with the fields this import left blank set to "" (what those recipients
   will get), so `{{ company[0] }}` on a blank company is found now;
3. a render for each of the first imported recipients with their real fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.errors import InvalidInput
from app.services.imports import ImportReport
from app.settings import Settings
from rotator.templates import (
    BUILTIN_NAMES,
    CompiledTemplates,
    TemplateError,
    TemplateLimits,
    UndefinedField,
    compiled_for,
)

SAMPLE_EMAIL = "recipient@example.com"
SAMPLE_UNSUBSCRIBE_URL = "https://unsubscribe.example/u/sample"


def template_limits(settings: Settings) -> TemplateLimits:
    return TemplateLimits(
        max_chars=settings.template_max_output_chars,
        max_seconds=settings.template_max_render_seconds,
    )


def campaign_templates(
    settings: Settings, subject: str, body_text: str, body_html: str | None
) -> CompiledTemplates:
    """Compiled (and cached); a syntax error is a 422 naming the template."""
    try:
        return compiled_for(subject, body_text, body_html, limits=template_limits(settings))
    except TemplateError as exc:
        raise invalid_template(exc) from None


def recipient_context(
    field_names: Sequence[str], fields: Mapping[str, Any], email: str, unsubscribe_url: str
) -> dict[str, Any]:
    """Every field of the campaign, "" where this recipient has none (an earlier import
    without that column), then the built-ins."""
    return {
        **dict.fromkeys(field_names, ""),
        **fields,
        "email": email,
        "unsubscribe_url": unsubscribe_url,
    }


def check_templates(
    templates: CompiledTemplates, field_names: Sequence[str], report: ImportReport
) -> None:
    """Steps 1-3 of the module docstring; InvalidInput (422) naming the template."""
    try:
        templates.check(field_names)
        if report.blank_fields:
            templates.check(field_names, blank=report.blank_fields)
    except UndefinedField as exc:
        raise InvalidInput(
            undefined_message(exc, field_names), field=exc.field, code="template"
        ) from None
    except TemplateError as exc:
        raise invalid_template(exc) from None
    for row, fields in report.samples:
        context = recipient_context(field_names, fields, SAMPLE_EMAIL, SAMPLE_UNSUBSCRIBE_URL)
        try:
            templates.render(context)
        except TemplateError as exc:
            raise InvalidInput(
                f"{exc.field}: {exc.message} (rendering it for the recipient in row {row})",
                field=exc.field,
                code="template",
            ) from None


def undefined_message(exc: UndefinedField, field_names: Sequence[str]) -> str:
    known = ", ".join(field_names) or "none"
    return (
        f"{exc.field} uses {{{{ {exc.name} }}}}, but no recipient has a field {exc.name!r} "
        f"(their fields: {known}; always there: {', '.join(BUILTIN_NAMES)}); add that "
        f'column, or write {{{{ {exc.name} | default("...") }}}}'
    )


def invalid_template(exc: TemplateError) -> InvalidInput:
    return InvalidInput(f"{exc.field}: {exc.message}", field=exc.field, code="template")
