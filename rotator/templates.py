"""Campaign templates, rendered in a Jinja sandbox.

Operators write the templates; recipients' CSV fields fill them. The sandbox blocks
attribute tricks (``''.__class__``), StrictUndefined turns a missing field into an
error instead of an empty string, and only the HTML body is autoescaped.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

BUILTIN_NAMES = ("email", "unsubscribe_url")
SAMPLE_VALUE = "sample"
MAX_OUTPUT_CHARS = 1_000_000
_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined")


class TemplateError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Sandbox(SandboxedEnvironment):
    # `"x" * 10**9` would allocate a gigabyte inside a worker: refuse huge products.
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, int) and abs(right) > 100:
                raise SecurityError("exponent too large")
            return operator.pow(left, right)
        size = _repeat_size(left, right)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError("result too large")
        return operator.mul(left, right)


def _repeat_size(left: Any, right: Any) -> int:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            return len(seq) * times
    return 0


def _env(autoescape: bool) -> SandboxedEnvironment:
    return _Sandbox(
        undefined=StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
        auto_reload=False,
    )


_TEXT = _env(autoescape=False)
_HTML = _env(autoescape=True)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


class CompiledTemplates:
    def __init__(self, subject: Template, body_text: Template, body_html: Template | None) -> None:
        named = (("subject", subject), ("body_text", body_text), ("body_html", body_html))
        self._fields: tuple[tuple[str, Template], ...] = tuple(
            (name, t) for name, t in named if t is not None
        )
        self._subject = subject
        self._text = body_text
        self._html = body_html

    def check(self, field_names: Iterable[str]) -> None:
        """Render once with every field set to a sample value: an undefined variable
        (not guarded by `| default` or `is defined`) names the field and the variable."""
        context: dict[str, object] = dict.fromkeys(BUILTIN_NAMES, SAMPLE_VALUE)
        context.update(dict.fromkeys(field_names, SAMPLE_VALUE))
        for name, template in self._fields:
            _render(name, template, context)

    def render(self, context: Mapping[str, object]) -> Rendered:
        subject = _render("subject", self._subject, context)
        if "\r" in subject or "\n" in subject:
            raise TemplateError("subject", "the rendered subject contains a line break")
        text = _render("body_text", self._text, context)
        html = None if self._html is None else _render("body_html", self._html, context)
        return Rendered(subject=subject, text=text, html=html)


def _render(field: str, template: Template, context: Mapping[str, object]) -> str:
    try:
        return template.render(context)
    except UndefinedError as exc:
        found = _UNDEFINED_NAME.search(str(exc))
        what = f"undefined variable '{found.group(1)}'" if found else str(exc)
        raise TemplateError(field, what) from None
    except SecurityError as exc:
        raise TemplateError(field, f"not allowed in a template: {exc}") from None
    except JinjaTemplateError as exc:
        raise TemplateError(field, str(exc)) from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(field, f"{type(exc).__name__}: {exc}") from None


def _compile(field: str, source: str, env: SandboxedEnvironment) -> Template:
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(field, f"line {exc.lineno}: {exc.message}") from None


def compile_templates(subject: str, body_text: str, body_html: str | None) -> CompiledTemplates:
    return CompiledTemplates(
        _compile("subject", subject, _TEXT),
        _compile("body_text", body_text, _TEXT),
        None if body_html is None else _compile("body_html", body_html, _HTML),
    )


@lru_cache(maxsize=256)
def compiled_for(subject: str, body_text: str, body_html: str | None) -> CompiledTemplates:
    """compile_templates, cached: the send path renders one campaign thousands of times."""
    return compile_templates(subject, body_text, body_html)
