"""Template limits: any template renders within its size bound or fails quickly with a
TemplateError, without using unbounded memory; blank values and `default`."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotator.templates import TemplateError, TemplateLimits, compile_templates

LIMITS = TemplateLimits(max_chars=200_000, max_seconds=0.5, max_steps=200_000)
# Generous for the test process: a render may hold a few times max_chars (a str() of a
# container, a format's pieces) but never anything near what the templates ask for.
PEAK_BYTES = 40 * 1024 * 1024
CONTEXT = {"name": "Ann", "company": "", "s": "ab", "email": "a@example.com"}


def render(source: str, limits: TemplateLimits = LIMITS) -> tuple[str | None, float, int]:
    """(text or None when refused, seconds, peak traced bytes)."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        templates = compile_templates("s", source, None, limits=limits)
        text: str | None = templates.render(CONTEXT).text
    except TemplateError as exc:
        assert exc.field == "body_text"
        text = None
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return text, elapsed, peak


ADVERSARIAL = [
    "{{ ([s] * 100000000) | join }}",
    "{{ ([s * 1000] * 10000) | join }}",
    "{{ ([s] * 1000) | join(s * 100000) }}",
    "{{ '%3000000s' % s }}",
    "{{ '%.3000000f' % 1.5 }}",
    "{{ '%(a)s%(a)s%(a)s%(a)s' % {'a': s * 90000} }}",
    "{{ '%*s' % (3000000, s) }}",
    "{{ '{:>30000000}'.format(s) }}",
    "{{ '{:{w}}'.format(s, w=30000000) }}",
    "{{ '{0}{0}{0}{0}{0}'.format(s * 50000) }}",
    "{{ '{x}{x}{x}{x}'.format_map({'x': s * 50000}) }}",
    "{{ s | center(30000000) }}",
    "{{ s.center(30000000) }}",
    "{{ s.zfill(30000000) }}",
    "{{ ((s ~ '\n') * 10000) | indent(10000) }}",
    "{{ ((s ~ '\n') * 10000) | indent('x' * 10000) }}",
    "{{ (s * 10000) | wordwrap(1, true, 'x' * 10000) }}",
    "{{ (s * 10000) | replace('', 'y' * 10000) }}",
    "{{ (s * 10000).replace('a', 'y' * 10000) }}",
    "{{ ('\t' * 10000).expandtabs(10000) }}",
    "{{ '%s' | format(s * 1000000) }}",
    "{{ s * 100000000 }}",
    "{{ [s] * 100000000 }}",
    "{{ (s ~ s) * 10000000 }}",
    "{{ 10 ** 10 ** 10 }}",
    "{% set x = 10 ** 1000 %}{{ x * x * x * x * x * x * x * x * x * x * x * x * x * x * x }}",
    "{{ (1).to_bytes(1000000000, 'big') }}",
    "{{ range(100000000) | list }}",
    "{{ range(10) | batch(1000000000, 'x') | list }}",
    "{{ range(10) | slice(1000000000) | list }}",
    "{{ lipsum(1000000) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
    "{% set ns = namespace(x=s) %}{% for i in range(60) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}",
    "{% set ns = namespace(x=s) %}{% for i in range(60) %}{% set ns.x = ns.x + ns.x %}{% endfor %}",
    "{% set ns = namespace(x=[s]) %}{% for i in range(60) %}{% set ns.x = ns.x+ns.x %}{% endfor %}",
    "{% set x %}{% for i in range(100000) %}{{ s * 1000 }}{% endfor %}{% endset %}{{ x | length }}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% macro f(n) %}{% if n %}{{ f(n-1)~f(n-1) }}{% else %}x{% endif %}{% endmacro %}{{ f(60) }}",
    "{% set a = [s * 50000] %}{% set b = [a, a, a, a, a, a, a, a] %}{{ [b, b, b, b] }}",
    "{{ ([[s] * 10000] * 100) | sum(start=[]) | length }}",
    "{{ {'a': s * 30000} | tojson(indent=100000) }}",
    "{{ (s * 90000) | urlize(target='x' * 100000) }}",
    "{% filter center(30000000) %}x{% endfilter %}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% set l = [] %}{% for i in range(10) %}{{ l.append(l) }}{% endfor %}",
]


@pytest.mark.parametrize("source", ADVERSARIAL)
def test_adversarial_templates_are_refused_quickly_within_bounded_memory(source: str) -> None:
    text, elapsed, peak = render(source)
    assert text is None or len(text) <= LIMITS.max_chars
    assert elapsed < LIMITS.max_seconds + 1.5
    assert peak < PEAK_BYTES


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ s | center(30000000) }}", "center() would be larger than the limit of 200,000"),
        ("{{ '%3000000s' % s }}", "a % format would be larger"),
        ("{{ '{:>30000000}'.format(s) }}", "str.format() would be larger"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "more than 200,000 steps",
        ),
        ("{{ 'x' * 150000 }}{{ 'y' * 150000 }}", "the rendered body_text is longer than"),
    ],
)
def test_the_error_names_the_template_and_the_limit(source: str, message: str) -> None:
    templates = compile_templates("s", source, None, limits=LIMITS)
    with pytest.raises(TemplateError) as caught:
        templates.render(CONTEXT)
    assert caught.value.field == "body_text"
    assert "over a template limit" in caught.value.message
    assert message in caught.value.message


def test_render_time_is_bounded_by_the_clock() -> None:
    slow = TemplateLimits(max_seconds=0.2, max_steps=10**9)
    templates = compile_templates(
        "s",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        None,
        limits=slow,
    )
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"longer than 0\.2 s"):
        templates.render({})
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ '%5s|%-4d|%.2f' % ('ab', 7, 1.234) }}", "   ab|7   |1.23"),
        ("{{ '{:>6}|{:^5}|{:.3}'.format(name, 'x', 3.14159) }}", "   Ann|  x  |3.14"),
        ("{{ [1, 2, 3] | join(', ') }}", "1, 2, 3"),
        ("{{ name | center(7) }}|", "  Ann  |"),
        ("{{ 'a\nb' | indent(2, first=true) }}", "  a\n  b"),
        ("{% for i in range(3) %}{{ loop.index }}{{ '-' ~ i }}{% endfor %}", "1-02-13-2"),
        ("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
         "{% endfor %}{{ ns.n }}", "6"),
        ("{% macro hi(who) %}Hi {{ who }}{% endmacro %}{{ hi(name) }}", "Hi Ann"),
        ("{{ [3, 1, 2] | sort | list }} {{ (1, 2) }} {{ {'k': 'v'}['k'] }}", "[1, 2, 3] (1, 2) v"),
        ("{{ [1, 2] | sum }} {{ 2 ** 10 }} {{ 7 // 2 }} {{ 'ab' * 3 }}", "3 1024 3 ababab"),
        ("{{ 'Hello %s' | format(name) }} {{ name | upper }}", "Hello Ann ANN"),
    ],
)  # fmt: skip
def test_ordinary_templates_render_as_in_jinja(source: str, expected: str) -> None:
    assert compile_templates("s", source, None).render(CONTEXT).text == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{ company | default("your team") }}', "your team"),
        ('{{ company | d("your team") }}', "your team"),
        ('{{ missing | default("x") }}', "x"),
        ('{{ name | default("x") }}', "Ann"),
        ('{{ spaces | default("x") }}', "x"),
        ('{{ zero | default("x") }}', "0"),
        ("[{{ company }}]", "[]"),
    ],
)
def test_default_replaces_blank_values_too(source: str, expected: str) -> None:
    context = {**CONTEXT, "spaces": "  ", "zero": 0}
    assert compile_templates("s", source, None).render(context).text == expected


def test_variables_are_the_fields_the_templates_read() -> None:
    templates = compile_templates(
        "Hi {{ first_name }}",
        "{% set x = 1 %}{{ x }} {{ company | default('') }} {{ email }} {{ range(2) | list }}"
        "{% for item in items %}{{ item }}{% endfor %}",
        "<p>{{ unsubscribe_url }} {{ city }}</p>",
    )
    assert templates.variables == {"first_name", "company", "items", "city"}


# --- property: random compositions of the dangerous constructs -----------------------

BIG = st.sampled_from([0, 1, 7, 1000, 99_999, 100_000, 1_000_000, 10**7, 10**9, 2**40])
SEEDS = st.sampled_from(["s", "name", "'xy'", "'\\t\\n'", "[s]", "[s, s, s]", "range(50)"])


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    inner = draw(expressions(depth + 1)) if depth < 3 and draw(st.booleans()) else draw(SEEDS)
    n = draw(BIG)
    shapes = [
        f"({inner}) * {n}",
        f"({inner}) ~ ({inner})",
        f"({inner}) + ({inner})",
        f"(({inner}) | string) | center({n})",
        f"(({inner}) | string) | indent({n}, true)",
        f"(({inner}) | string) | wordwrap({max(n, 1)}, true, ({inner}) | string)",
        f"(({inner}) | string) | replace('', ({inner}) | string)",
        f"[{inner}] * {n}",
        f"(({inner}) | list) | join(({inner}) | string)",
        f"'%{n}s' % (({inner}) | string)",
        f"'{{:>{n}}}'.format({inner})",
        f"range({n}) | list",
        f"(({inner}) | string).ljust({n})",
        f"(({inner}) | list) | batch({max(n, 1)}, 'x') | list",
    ]
    return draw(st.sampled_from(shapes))


@st.composite
def templates(draw: st.DrawFn) -> str:
    expression = draw(expressions())
    loops = draw(st.integers(0, 3))
    body = f"{{{{ {expression} }}}}"
    for level in range(loops):
        body = f"{{% for i{level} in range({draw(BIG)}) %}}{body}{{% endfor %}}"
    if draw(st.booleans()):
        body = f"{{% set x %}}{body}{{% endset %}}{{{{ x | length }}}}"
    return body


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(source=templates())
def test_any_composition_renders_within_bounds_or_fails_fast(source: str) -> None:
    limits = TemplateLimits(max_chars=100_000, max_seconds=0.15, max_steps=100_000)
    text, elapsed, peak = render(source, limits)
    assert text is None or len(text) <= limits.max_chars
    assert elapsed < 1.0, source
    assert peak < PEAK_BYTES, source
