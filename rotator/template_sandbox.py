"""A Jinja sandbox in which any template's render is bounded in size, steps and time.

Attribute escapes (`''.__class__`) are Jinja's sandbox; what it does not bound is how
big a value a template can build or how long it can loop: `([s]*n)|join`,
`'%3000000s' % x`, `'{:>N}'.format(x)`, `|center(N)`, `|indent`, `|wordwrap`,
`replace('', big)`, nested `range` loops, `{% set x = x ~ x %}` repeated. The accounting
is in rotator.template_budget, the size estimates in rotator.template_estimates; this
module puts a check on every way a template makes
a value or spends time:

* ImmutableSandboxedEnvironment: no `list.append` / `dict.update`, which would grow a
  value in place behind every check (`namespace()` attributes remain for state).
* Every binary operator is intercepted (call_binop) and every call goes through
  call(): a step each, a size estimate BEFORE the operation where its result may
  dwarf its inputs (`*`, `**`, `%`, `+`, `center`/`ljust`/`zfill`, `expandtabs`,
  `join`, `replace`, `translate`), the result's weight after it in every case, and no
  integer argument past max_chars to a built-in method (`(1).to_bytes(10**10)`).
* `str.format` / `format_map` run through a formatter that counts every field at its
  width and the value it takes; `%` formatting is estimated from its specs.
* Every filter is wrapped the same way (center, indent, wordwrap, join, replace,
  format, batch, slice, urlize, tojson, pprint have estimates), and `sum` adds with
  the checked `+`. The wrappers are pass_context so Jinja never runs a filter at
  compile time, where no budget runs.
* The parsed template is rewritten before code generation: each `for` iterates
  through bounded_iter (a step per item), `~` becomes bounded_concat (weighed before
  joining), list / tuple / dict literals pass through bounded_value. Output buffers
  (macros, `{% set %}` and `{% filter %}` blocks, `caller()`) join through
  environment.concat, which counts first; every `{{ }}` value is weighed by finalize
  before it becomes text; the renderer (rotator.templates) streams generate() and
  stops past max_chars.

`default` / `d` also replace a blank value (None, or a string that is empty or only
whitespace), not only an undefined one: an empty CSV cell is a missing value to the
person who wrote `{{ company | default("your team") }}`.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Iterator
from functools import update_wrapper
from typing import Any, cast

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import pass_context, pass_environment, pass_eval_context
from jinja2.visitor import NodeTransformer
from markupsafe import EscapeFormatter, Markup

from rotator.template_budget import (
    current,
    format_spec_width,
    weight,
)
from rotator.template_estimates import (
    FILTER_CHECKS,
    as_int,
    check_binop,
    check_method,
    text_size,
)


def blank_default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Jinja's default(), which also fills a blank value (module docstring)."""
    if isinstance(value, Undefined) or value is None:
        return default_value
    if isinstance(value, str) and not value.strip():
        return default_value
    if boolean and not value:
        return default_value
    return value


# --- functions the rewritten template calls ----------------------------------------


def bounded_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = current()
    for item in iterable:
        budget.tick()
        yield item


@pass_eval_context
def bounded_concat(eval_ctx: Any, *values: Any) -> str:
    budget = current()
    budget.tick()
    budget.allow(text_size(budget, values), "a ~ concatenation")
    if eval_ctx.autoescape or eval_ctx.volatile:
        return markup_join(values)
    return str_join(values)


def bounded_value(value: Any) -> Any:
    budget = current()
    budget.tick()
    return budget.bound(value, "a list or dict")


def bounded_join(pieces: Iterable[str]) -> str:
    """environment.concat: how macros, blocks and {% set %} blocks join their output."""
    parts = pieces if isinstance(pieces, list) else list(pieces)
    current().allow(sum(map(len, parts)), "a block of template output")
    return "".join(parts)


def bounded_range(*args: Any) -> range:
    numbers = range(*args)
    current().allow_count(len(numbers), "range()")
    return numbers


def _finalize(value: Any) -> Any:
    budget = current()
    budget.tick()
    return budget.produce(budget.bound(value, "a {{ }} value"))


_OWN: tuple[Callable[..., Any], ...] = (bounded_iter, bounded_concat, bounded_value)


@pass_environment
def bounded_sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    total = start
    for item in iterable:
        total = environment.call_binop(None, "+", total, item)
    return total


def _bounded_filter(name: str, inner: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, behind a step, its estimate (if it has one) and a check of its result."""
    pass_arg = getattr(inner, "jinja_pass_arg", None)
    check = FILTER_CHECKS.get(name)
    what = f"the result of the {name} filter"

    @pass_context
    def bounded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.tick()
        if check is not None:
            replaced = check(budget, value, *args, **kwargs)
            value = value if replaced is None else replaced
        if pass_arg is not None:
            first = {
                "context": context,
                "eval_context": context.eval_ctx,
                "environment": context.environment,
            }[pass_arg.name]
            result = inner(first, value, *args, **kwargs)
        else:
            result = inner(value, *args, **kwargs)
        return budget.bound(result, what)

    bounded.__name__ = f"bounded_{name}"
    return bounded


def _bounded_lipsum(inner: Callable[..., str]) -> Callable[..., str]:
    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        current().allow(as_int(n) * as_int(max) * 12, "lipsum()")
        return inner(n, html, min, max)

    return lipsum


# --- str.format --------------------------------------------------------------------


class _BoundedFormatter(SandboxedFormatter):
    def __init__(self, env: Any, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._budget = current()
        self._size = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = self._budget
        budget.tick()
        text = weight(value, budget.limits.max_chars) * (1 if isinstance(value, str) else 6)
        self._size += max(format_spec_width(budget, format_spec), text)
        budget.allow(self._size, "str.format()")
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, EscapeFormatter):
    pass


# --- the environment ---------------------------------------------------------------


class _Rewrite(NodeTransformer):
    """Routes loops, `~` and literals through the bounded_* functions (module docstring)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _call("bounded_iter", [cast(nodes.Expr, node.iter)], node)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _call("bounded_concat", list(node.nodes), node)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _call("bounded_value", [node], node)

    visit_Dict = visit_List

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        return node if node.ctx != "load" else _call("bounded_value", [node], node)


def _call(name: str, args: list[nodes.Expr], like: nodes.Node) -> nodes.Call:
    func = nodes.EnvironmentAttribute(name, lineno=like.lineno)
    return nodes.Call(func, args, [], None, None, lineno=like.lineno)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=autoescape,
            keep_trailing_newline=True,
            auto_reload=False,
            finalize=_finalize,
        )
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters["default"] = self.filters["d"] = _bounded_filter("default", blank_default)
        self.filters["sum"] = _bounded_filter("sum", bounded_sum)
        self.globals["range"] = bounded_range
        lipsum = cast(Callable[..., str], self.globals["lipsum"])
        self.globals["lipsum"] = _bounded_lipsum(lipsum)
        self.concat = bounded_join  # type: ignore[method-assign]
        self.bounded_iter = bounded_iter
        self.bounded_concat = bounded_concat
        self.bounded_value = bounded_value

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        rewritten = _Rewrite().visit(source)
        rewritten.set_environment(self)
        return super()._generate(rewritten, name, filename, defer_init)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        budget.tick()
        check_binop(budget, operator, left, right)
        result = self.binop_table[operator](left, right)
        if as_int(result):
            budget.allow_int(result.bit_length(), f"a {operator} result")
        return budget.bound(result, f"a {operator} result")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.tick()
        if any(__obj is own for own in _OWN):
            return __context.call(__obj, *args, **kwargs)
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str | bytes):
            args = check_method(budget, owner, name, args, kwargs)
        if isinstance(__obj, types.BuiltinMethodType | types.BuiltinFunctionType):
            for arg in (*args, *kwargs.values()):
                budget.allow(abs(as_int(arg)), f"an argument of {name}()")
        result = super().call(__context, __obj, *args, **kwargs)
        return budget.bound(result, f"the result of {name or 'a call'}()")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's sandboxed str.format / format_map, through the bounded formatter."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or (
            value.__name__ not in ("format", "format_map")
        ):
            return None
        f_self: Any = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type = type(f_self)
        is_format_map = value.__name__ == "format_map"
        env = self

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            formatter: _BoundedFormatter
            if isinstance(f_self, Markup):
                formatter = _BoundedEscapeFormatter(env, escape=f_self.escape)
            else:
                formatter = _BoundedFormatter(env)
            return str_type(formatter.vformat(f_self, args, kwargs))

        return update_wrapper(wrapper, value)
