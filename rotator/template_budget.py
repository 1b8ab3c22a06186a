"""The budget one template render may spend: characters, steps and seconds.

Every value a template can build is bounded by its *weight*: the characters of its
strings plus one per container element, counted through nested containers as often
as they are referenced (so `[s, s]` weighs twice `s`, as `str()` or `join` would
expand it). rotator.template_sandbox keeps every value a template makes at or under
`max_chars` by estimating an operation's result BEFORE running it where the result
could be much larger than its inputs (`*`, `%`, `str.format` widths, `center`,
`replace`, `join`, ...), and checking the result after it in every other case. A
step is a loop iteration, a call, a filter or an operator; past `max_steps`, or past
`max_seconds` of wall time, the render stops.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from jinja2.exceptions import SecurityError
from jinja2.utils import Namespace

# Integers past this many bits cost real CPU per operation (and 10**(10**8) never fits
# anything a message needs); the int -> str conversion limit is ~14,000 bits.
MAX_INT_BITS: Final = 16_384

# Text a render may produce in all, top level and buffers (a macro's output is counted
# inside the macro and again where it is printed).
PRODUCED_FACTOR: Final = 4

_PERCENT_SPEC: Final = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?"
    r"[hlL]?(?P<conversion>[diouxXeEfFgGcrsa%])"
)
_DIGITS: Final = re.compile(r"\d+")


@dataclass(frozen=True)
class TemplateLimits:
    """Plain values (the app passes them from its settings): rotator reads no settings."""

    max_chars: int = 2_000_000  # rendered characters per template, and per value inside it
    max_seconds: float = 1.0  # wall time per template render
    max_steps: int = 1_000_000  # loop iterations, calls, filters and operators per render
    max_items: int = 100_000  # elements of a range(), a slice() or batch()


class LimitExceeded(SecurityError):
    """A render went over its TemplateLimits; the message says which limit."""


class Budget:
    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.steps = 0
        self.produced = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise LimitExceeded(
                f"the template takes more than {self.limits.max_steps:,} steps "
                "(loop iterations, calls, filters and operators)"
            )
        if time.monotonic() > self.deadline:
            raise LimitExceeded(
                f"the template takes longer than {self.limits.max_seconds:g} s to render"
            )

    def produce(self, value: Any) -> Any:
        """Counts a {{ }} value, at top level or into a buffer (a macro's, a block's):
        buffered text is held until its block ends, so all of it is bounded."""
        self.produced += weight(value, self.limits.max_chars)
        if self.produced > PRODUCED_FACTOR * self.limits.max_chars:
            raise LimitExceeded(
                f"the template produces more than {PRODUCED_FACTOR * self.limits.max_chars:,} "
                "characters of text, counting what macros and blocks buffer"
            )
        return value

    def allow(self, size: int, what: str) -> None:
        """Refuses an operation whose result would weigh more than max_chars."""
        if size > self.limits.max_chars:
            raise LimitExceeded(
                f"{what} would be larger than the limit of {self.limits.max_chars:,} characters"
            )

    def bound(self, value: Any, what: str) -> Any:
        """Returns value, or refuses it when it weighs more than max_chars."""
        self.allow(weight(value, self.limits.max_chars), what)
        return value

    def allow_int(self, bits: int, what: str) -> None:
        if bits > MAX_INT_BITS:
            raise LimitExceeded(f"{what} would be a number of more than {MAX_INT_BITS:,} bits")

    def allow_count(self, count: int, what: str) -> None:
        if count > self.limits.max_items:
            raise LimitExceeded(f"{what} would have more than {self.limits.max_items:,} items")


# Outside templates.render (a constant folded at compile time) each check gets a fresh
# budget with the default size limits; only templates.render counts steps and time.
_UNTIMED = TemplateLimits(max_seconds=float("inf"), max_steps=1 << 62)
_CURRENT: ContextVar[Budget | None] = ContextVar("sendfleet_template_budget", default=None)


def current() -> Budget:
    budget = _CURRENT.get()
    return Budget(_UNTIMED) if budget is None else budget


def start(limits: TemplateLimits) -> object:
    """Starts a render's budget; pass the token to finish()."""
    return _CURRENT.set(Budget(limits))


def finish(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]


def weight(value: Any, limit: int) -> int:
    """The value's weight (module docstring), counted up to just past `limit`.

    Iterative, so a deep or self-referencing structure costs at most `limit` steps."""
    if type(value) is str:
        return len(value) + 1
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Namespace):
            item = object.__getattribute__(item, "_Namespace__attrs")
        if isinstance(item, str | bytes | bytearray | range):
            total += len(item) + 1
        elif isinstance(item, bool) or item is None:
            total += 1
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, list | tuple | set | frozenset | Mapping):
            pairs = isinstance(item, Mapping)
            total += (2 if pairs else 1) * len(item) + 1
            if total > limit:
                return total
            for element in item.values() if pairs else item:  # type: ignore[union-attr]
                if type(element) is str:
                    total += len(element) + 1
                else:
                    stack.append(element)
            if pairs:
                stack.extend(item)
        else:
            total += 1
        if total > limit:
            return total
    return total


def percent_size(budget: Budget, fmt: str, args: Any) -> int:
    """An upper estimate of `fmt % args`: each conversion at its width or precision, or
    the weight of the value it takes (numbers are bounded by MAX_INT_BITS)."""
    limit = budget.limits.max_chars
    size = len(fmt)
    position = 0
    mapping = args if isinstance(args, Mapping) else None
    values = args if isinstance(args, tuple) else (args,)
    for match in _PERCENT_SPEC.finditer(fmt):
        if match["conversion"] == "%":
            continue
        for part in ("width", "precision"):
            if match[part] == "*":
                raise LimitExceeded("'*' widths in % formatting are not allowed in templates")
            if match[part]:
                size += _number(budget, match[part])
        if match["key"] is not None and mapping is not None:
            value = mapping.get(match["key"], "")
        else:
            value = values[position] if position < len(values) else ""
            position += 1
        # %r, %a and str() of a container escape a character into up to 6.
        plain = isinstance(value, str) and match["conversion"] == "s"
        size += weight(value, limit) * (1 if plain else 6)
        if size > limit:
            return size
    return size


def format_spec_width(budget: Budget, spec: str) -> int:
    """The largest number in a str.format spec ("{:>30000000}"): a width or precision."""
    return max((_number(budget, digits) for digits in _DIGITS.findall(spec)), default=0)


def _number(budget: Budget, digits: str) -> int:
    if len(digits) > 12:
        budget.allow(10**12, "a format width")
    return int(digits)
