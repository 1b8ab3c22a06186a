"""Campaign templates, rendered in a bounded Jinja sandbox.

Operators write the templates; recipients' fields fill them. The sandbox
(rotator.template_sandbox) blocks attribute tricks (``''.__class__``) and bounds every
render by TemplateLimits (rendered characters, steps and wall time), whatever the
template; StrictUndefined turns a variable no recipient has into an error instead of
an empty string; only the HTML body is autoescaped.

Blank values: the app gives every field of a campaign to every recipient, blank as the
empty string, so `{{ company }}` renders "" for an empty cell; `default` / `d` replace a
blank value as well as an undefined one (`{{ company | default("your team") }}`).

A render over a limit, or any other failure inside a template, is a TemplateError
naming the template (subject, body_text or body_html): the API answers it with a 4xx
at creation, the send path fails that one recipient with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import Template, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError

from rotator.template_budget import LimitExceeded, TemplateLimits, finish, start
from rotator.template_sandbox import BoundedSandbox

BUILTIN_NAMES = ("email", "unsubscribe_url")
SAMPLE_VALUE = "sample"
DEFAULT_LIMITS = TemplateLimits()
_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined")

__all__ = [
    "BUILTIN_NAMES",
    "CompiledTemplates",
    "Rendered",
    "TemplateError",
    "TemplateLimits",
    "UndefinedField",
    "compile_templates",
    "compiled_for",
]


class TemplateError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UndefinedField(TemplateError):
    """A template uses a variable the context does not have (and does not guard)."""

    def __init__(self, field: str, name: str) -> None:
        super().__init__(field, f"undefined variable '{name}'")
        self.name = name


_TEXT = BoundedSandbox(autoescape=False)
_HTML = BoundedSandbox(autoescape=True)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


class CompiledTemplates:
    def __init__(
        self,
        subject: Template,
        body_text: Template,
        body_html: Template | None,
        *,
        variables: frozenset[str],
        limits: TemplateLimits,
    ) -> None:
        named = (("subject", subject), ("body_text", body_text), ("body_html", body_html))
        self._fields: tuple[tuple[str, Template], ...] = tuple(
            (name, t) for name, t in named if t is not None
        )
        self._subject = subject
        self._text = body_text
        self._html = body_html
        self.limits = limits
        # The recipient fields the templates read (built-ins and Jinja globals left out),
        # guarded (`| default`, `is defined`) or not.
        self.variables = variables

    def check(self, field_names: Iterable[str], *, blank: Iterable[str] = ()) -> None:
        """Render once with every field set to a sample value (and the `blank` ones to
        ""), under the limits: an undefined variable (not guarded by `| default` or
        `is defined`) names the template and the variable."""
        context: dict[str, object] = dict.fromkeys(BUILTIN_NAMES, SAMPLE_VALUE)
        context.update(dict.fromkeys(field_names, SAMPLE_VALUE))
        context.update(dict.fromkeys(blank, ""))
        self.render(context)

    def render(self, context: Mapping[str, object]) -> Rendered:
        subject = _render("subject", self._subject, context, self.limits)
        if "\r" in subject or "\n" in subject:
            raise TemplateError("subject", "the rendered subject contains a line break")
        text = _render("body_text", self._text, context, self.limits)
        html = (
            None if self._html is None else _render("body_html", self._html, context, self.limits)
        )
        return Rendered(subject=subject, text=text, html=html)


def _render(
    field: str, template: Template, context: Mapping[str, object], limits: TemplateLimits
) -> str:
    token = start(limits)
    try:
        parts: list[str] = []
        size = 0
        for piece in template.generate(context):
            size += len(piece)
            if size > limits.max_chars:
                raise LimitExceeded(
                    f"the rendered {field} is longer than the limit of "
                    f"{limits.max_chars:,} characters"
                )
            parts.append(piece)
        return "".join(parts)
    except UndefinedError as exc:
        found = _UNDEFINED_NAME.search(str(exc))
        if found:
            raise UndefinedField(field, found.group(1)) from None
        raise TemplateError(field, str(exc)) from None
    except LimitExceeded as exc:
        raise TemplateError(field, f"over a template limit: {exc}") from None
    except SecurityError as exc:
        raise TemplateError(field, f"not allowed in a template: {exc}") from None
    except JinjaTemplateError as exc:
        raise TemplateError(field, str(exc)) from None
    except RecursionError:
        raise TemplateError(field, "the template recurses or nests too deeply") from None
    except MemoryError:
        raise TemplateError(field, "the template needs too much memory") from None
    except Exception as exc:  # a template's own error (TypeError, ...) is the template's fault
        raise TemplateError(field, f"{type(exc).__name__}: {exc}") from None
    finally:
        finish(token)


def _compile(field: str, source: str, env: BoundedSandbox) -> tuple[Template, set[str]]:
    try:
        template = env.from_string(source)
        names = meta.find_undeclared_variables(env.parse(source))
    except TemplateSyntaxError as exc:
        raise TemplateError(field, f"line {exc.lineno}: {exc.message}") from None
    except RecursionError:
        raise TemplateError(field, "the template nests too deeply") from None
    return template, names - set(env.globals) - set(BUILTIN_NAMES)


def compile_templates(
    subject: str,
    body_text: str,
    body_html: str | None,
    *,
    limits: TemplateLimits = DEFAULT_LIMITS,
) -> CompiledTemplates:
    subject_t, names = _compile("subject", subject, _TEXT)
    text_t, text_names = _compile("body_text", body_text, _TEXT)
    names |= text_names
    html_t = None
    if body_html is not None:
        html_t, html_names = _compile("body_html", body_html, _HTML)
        names |= html_names
    return CompiledTemplates(subject_t, text_t, html_t, variables=frozenset(names), limits=limits)


@lru_cache(maxsize=256)
def compiled_for(
    subject: str,
    body_text: str,
    body_html: str | None,
    *,
    limits: TemplateLimits = DEFAULT_LIMITS,
) -> CompiledTemplates:
    """compile_templates, cached: the send path renders one campaign thousands of times."""
    return compile_templates(subject, body_text, body_html, limits=limits)
