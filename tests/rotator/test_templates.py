from __future__ import annotations

import pytest

from rotator.templates import TemplateError, compile_templates, compiled_for


def test_renders_subject_text_and_html() -> None:
    t = compile_templates(
        "Hi {{ first_name }}", "Hello {{ first_name }},\n", "<p>{{ company }}</p>"
    )
    out = t.render({"first_name": "Ann", "company": "ACME", "email": "ann@example.org"})
    assert (out.subject, out.text, out.html) == ("Hi Ann", "Hello Ann,\n", "<p>ACME</p>")


def test_html_escapes_field_values_and_text_does_not() -> None:
    t = compile_templates("{{ name }}", "{{ name }}", "<b>{{ name }}</b>")
    out = t.render({"name": "<script>x & y</script>"})
    assert out.html == "<b>&lt;script&gt;x &amp; y&lt;/script&gt;</b>"
    assert out.text == "<script>x & y</script>"
    assert out.subject == "<script>x & y</script>"


@pytest.mark.parametrize(
    ("subject", "text", "html", "field"),
    [
        ("Hi {{ name", "ok", None, "subject"),
        ("ok", "line one\n{% if x %}\nno end", None, "body_text"),
        ("ok", "ok", "<p>{{ }}</p>", "body_html"),
    ],
)
def test_syntax_error_names_the_field_and_line(
    subject: str, text: str, html: str | None, field: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_templates(subject, text, html)
    assert caught.value.field == field
    assert "line " in caught.value.message


def test_syntax_error_reports_the_right_line() -> None:
    with pytest.raises(TemplateError, match="line 3"):
        compile_templates("s", "one\ntwo\n{{ three", None)


def test_check_names_the_field_and_the_undefined_variable() -> None:
    t = compile_templates("Hi {{ first_name }}", "Dear {{ frist_name }}", None)
    with pytest.raises(TemplateError) as caught:
        t.check(["first_name"])
    assert caught.value.field == "body_text"
    assert "frist_name" in caught.value.message


def test_check_accepts_known_fields_builtins_and_guarded_names() -> None:
    t = compile_templates(
        "{{ first_name | default('there') }}",
        "{{ email }} {{ unsubscribe_url }} {% if city is defined %}{{ city }}{% endif %}",
        "<p>{{ company | default('') }}</p>",
    )
    t.check([])


def test_render_with_a_missing_field_is_an_error_not_an_empty_string() -> None:
    t = compile_templates("Hi {{ name }}", "x", None)
    with pytest.raises(TemplateError, match="'name'"):
        t.render({})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ 'x' * 100000000 }}",
    ],
)
def test_sandbox_blocks_unsafe_templates(source: str) -> None:
    t = compile_templates("s", source, None)
    with pytest.raises(TemplateError) as caught:
        t.check([])
    assert caught.value.field == "body_text"


def test_rendered_subject_may_not_contain_a_line_break() -> None:
    t = compile_templates("Hi {{ name }}", "x", None)
    with pytest.raises(TemplateError) as caught:
        t.render({"name": "Ann\r\nBcc: victim@example.org"})
    assert caught.value.field == "subject"
    with pytest.raises(TemplateError):
        t.render({"name": "Ann\nX"})


def test_bodies_keep_their_trailing_newline() -> None:
    assert compile_templates("s", "a\n", None).render({}).text == "a\n"


def test_compiled_for_is_cached() -> None:
    a = compiled_for("s {{ x }}", "t", None)
    assert compiled_for("s {{ x }}", "t", None) is a
    assert compiled_for("s {{ x }}", "t", "<p></p>") is not a
