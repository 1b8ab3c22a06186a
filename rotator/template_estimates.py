"""Size estimates made BEFORE a template operation builds its result, where the result may
dwarf its inputs (`*`, `%`, `+`, str methods such as center / zfill / replace / join, and
the filters center, indent, wordwrap, replace, join, format, batch, slice, urlize, tojson,
pprint). rotator.template_sandbox calls them; rotator.template_budget does the counting."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rotator.template_budget import Budget, percent_size, weight

Check = Callable[..., Any]


def text_size(budget: Budget, values: Iterable[Any]) -> int:
    """An upper estimate of the text of `values` (str() of a container escapes)."""
    limit = budget.limits.max_chars
    size = 0
    for value in values:
        size += len(value) if type(value) is str else weight(value, limit) * 6
        if size > limit:
            break
    return size


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _len(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes) else 0


# --- estimates for operators, methods and filters -----------------------------------


def check_binop(budget: Budget, operator: str, left: Any, right: Any) -> None:
    limit = budget.limits.max_chars
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | bytes) and as_int(times) > 0:
                budget.allow(len(seq) * as_int(times), "a * repetition")
            elif isinstance(seq, list | tuple) and as_int(times) > 0:
                budget.allow(weight(seq, limit) * as_int(times), "a * repetition")
        if as_int(left) and as_int(right):
            budget.allow_int(left.bit_length() + right.bit_length(), "a * product")
    elif operator == "**":
        if as_int(left) not in (0, 1, -1) and as_int(right) > 0:
            budget.allow_int(abs(left).bit_length() * right, "a ** power")
    elif operator == "+":
        if isinstance(left, str | bytes | list | tuple) and isinstance(right, type(left)):
            budget.allow(weight(left, limit) + weight(right, limit), "a + concatenation")
    elif operator == "%" and isinstance(left, str | bytes):
        fmt = left if isinstance(left, str) else left.decode("latin-1")
        budget.allow(percent_size(budget, fmt, right), "a % format")


def _replace_size(s: Any, old: Any, new: Any, count: Any) -> int:
    if not isinstance(s, str | bytes) or not isinstance(old, type(s)):
        return 0
    if not isinstance(new, str | bytes):
        return len(s)
    found = len(s) + 1 if not old else s.count(old)  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(s) + found * max(0, len(new) - len(old))


def check_method(budget: Budget, owner: Any, name: str, args: tuple[Any, ...], kwargs: Any) -> Any:
    """Estimates of the str / bytes methods that amplify; returns args (join's may be
    materialised)."""
    what = f"{type(owner).__name__}.{name}()"
    if name in ("center", "ljust", "rjust", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        budget.allow(as_int(width), what)
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        tab = "\t" if isinstance(owner, str) else b"\t"
        budget.allow(len(owner) + owner.count(tab) * as_int(size), what)
    elif name == "join" and args:
        items = list(args[0])
        budget.allow(text_size(budget, items) + len(owner) * len(items), what)
        args = (items, *args[1:])
    elif name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        budget.allow(_replace_size(owner, args[0], args[1], count), what)
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((_len(v) for v in args[0].values()), default=1)
        budget.allow(len(owner) * max(1, longest), what)
    return args


def _check_center(b: Budget, value: Any, width: Any = 80) -> None:
    b.allow(_len(value) + as_int(width), "center()")


def _check_indent(
    b: Budget, s: Any, width: Any = 4, first: Any = False, blank: Any = False
) -> None:
    step = len(width) if isinstance(width, str) else as_int(width)
    lines = s.count("\n") + 1 if isinstance(s, str) else 1
    b.allow(_len(s) + lines * step, "indent()")


def _check_wordwrap(
    b: Budget,
    s: Any,
    width: Any = 79,
    break_long_words: Any = True,
    wrapstring: Any = None,
    break_on_hyphens: Any = True,
) -> None:
    if not isinstance(s, str):
        return
    wrap = len(wrapstring) if isinstance(wrapstring, str) else 1
    lines = len(s) // max(as_int(width), 1) + s.count(" ") + s.count("\n") + 1
    b.allow(len(s) + lines * wrap, "wordwrap()")


def _check_replace(b: Budget, s: Any, old: Any, new: Any, count: Any = None) -> None:
    b.allow(_replace_size(s, old, new, -1 if count is None else count), "replace()")


def _check_join(b: Budget, value: Any, d: Any = "", attribute: Any = None) -> list[Any]:
    items = list(value)
    b.allow(text_size(b, items) + _len(d) * len(items), "join()")
    return items


def _check_format(b: Budget, value: Any, *args: Any, **kwargs: Any) -> None:
    b.allow(percent_size(b, str(value), kwargs or args), "format()")


def _check_batch(b: Budget, value: Any, linecount: Any, fill_with: Any = None) -> None:
    b.allow_count(as_int(linecount), "batch()")


def _check_slice(b: Budget, value: Any, slices: Any, fill_with: Any = None) -> None:
    b.allow_count(as_int(slices), "slice()")


def _check_urlize(
    b: Budget,
    value: Any,
    trim_url_limit: Any = None,
    nofollow: Any = False,
    target: Any = None,
    rel: Any = None,
    extra_schemes: Any = None,
) -> None:
    extra = _len(target) + _len(rel) + 40  # added to every link
    b.allow(2 * _len(value) + (_len(value) // 8 + 1) * extra, "urlize()")


def _check_nested_dump(b: Budget, value: Any, indent: Any = None) -> None:
    step = 1 if indent is None else as_int(indent)
    size = weight(value, b.limits.max_chars)
    b.allow(size * 6 + size * step * min(size, 1000), "a JSON or pprint dump")


FILTER_CHECKS: dict[str, Check] = {
    "center": _check_center,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "replace": _check_replace,
    "join": _check_join,
    "format": _check_format,
    "batch": _check_batch,
    "slice": _check_slice,
    "urlize": _check_urlize,
    "tojson": _check_nested_dump,
    "pprint": lambda b, value: _check_nested_dump(b, value, None),
}
