"""Liquid compiled once and rendered per person: limits against hostile templates and
traits, the undefined-variable policy, syntax errors with their position, and binding shared
parts once giving exactly what a whole render gives."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from junction.render.liquid import (
    OUTPUT_CHARACTERS,
    RenderFailed,
    TemplateSyntaxError,
    compile_piece,
)


def render(source: str, undefined: str = "lenient", html: bool = False, **namespace: Any) -> str:
    return compile_piece("f", source, undefined, html).bind({}).render(namespace)


def test_no_python_internals_are_reachable() -> None:
    for probe in (
        "{{ contact.__class__ }}",
        "{{ contact.__class__.__mro__ }}",
        "{{ contact.items }}",
        "{{ contact.get }}",
        "{{ contact['__class__'] }}",
    ):
        assert render(probe, contact={"name": "Ada"}) == ""
    with pytest.raises(RenderFailed, match="undefined"):
        render("{{ contact.__class__ }}", "strict", contact={"name": "Ada"})


def test_an_endless_loop_is_stopped_and_reported() -> None:
    with pytest.raises(RenderFailed, match="loop iteration limit"):
        render("{% for i in (1..100000000) %}x{% endfor %}")
    with pytest.raises(RenderFailed, match="loop iteration limit"):
        render("{% for a in (1..5000) %}{% for b in (1..5000) %}{% endfor %}{% endfor %}")


def test_gigabytes_of_output_are_stopped() -> None:
    big = "x" * 200_000
    with pytest.raises(RenderFailed, match="output stream limit"):
        render("{% for i in (1..10000) %}{{ contact.bio }}{% endfor %}", contact={"bio": big})
    # A trait alone may not be larger than the limit either.
    with pytest.raises(RenderFailed, match="output stream limit"):
        render("{{ contact.bio }}", contact={"bio": "y" * (OUTPUT_CHARACTERS + 1)})


def test_deep_nesting_is_stopped() -> None:
    nested: dict[str, Any] = {}
    for _ in range(5000):
        nested = {"n": nested}
    with pytest.raises(RenderFailed):
        render("{{ contact }}", contact=nested)


def test_lenient_renders_missing_as_nothing_and_strict_fails_naming_it() -> None:
    source = "Hi {{ contact.first_name }}!"
    assert render(source, contact={}) == "Hi !"
    with pytest.raises(RenderFailed, match="first_name"):
        render(source, "strict", contact={})
    assert render("Hi {{ contact.first_name | default: 'there' }}", "strict", contact={}) == (
        "Hi there"
    )


def test_syntax_errors_carry_line_and_column() -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_piece("email.html", "<p>ok</p>\n<p>{% if %}</p>")
    problem = caught.value.problem
    assert (problem.field, problem.line, problem.column) == ("email.html", 2, 7)
    assert "missing expression" in problem.message


def test_unknown_filters_are_syntax_errors_at_save_time() -> None:
    with pytest.raises(TemplateSyntaxError, match="unknown filter 'moneyy'") as caught:
        compile_piece("sms.text", "Total:\n  {{ data.total | moneyy }}")
    assert (caught.value.problem.line, caught.value.problem.column) == (2, 19)


def test_html_fields_escape_what_they_output_unless_raw() -> None:
    contact = {"name": "<script>alert(1)</script>", "bio": "<b>bold</b>"}
    out = render("<p>{{ contact.name }}</p>{{ contact.bio | raw }}", html=True, contact=contact)
    assert out == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p><b>bold</b>"
    assert render("{{ contact.name }}", contact=contact) == contact["name"]


def test_variables_are_listed() -> None:
    piece = compile_piece("f", "{{ contact.a }} {% for x in data.items %}{{ x }}{% endfor %}")
    assert piece.variables == ["contact.a", "data.items"]


def test_binding_renders_shared_parts_once() -> None:
    piece = compile_piece(
        "f", "{% for i in data.items %}[{{ i }}]{% endfor %} {{ contact.name }} {{ workspace.x }}"
    )
    bound = piece.bind({"data": {"items": [1, 2]}, "workspace": {"x": "W"}})
    assert bound.parts[0] == "[1][2] "  # the loop and the text after it, rendered once
    assert bound.render({"contact": {"name": "Ada"}}) == "[1][2] Ada W"


def test_stateful_templates_are_rendered_whole() -> None:
    piece = compile_piece("f", "{% assign n = contact.name %}{{ data.greeting }} {{ n }}")
    bound = piece.bind({"data": {"greeting": "Hi"}})
    assert bound.render({"contact": {"name": "Ada"}}) == "Hi Ada"


SOURCES = [
    "Hi {{ contact.name | default: 'you' }}, {{ data.n | plus: 1 }}",
    "{% if contact.vip %}VIP {{ data.offer }}{% else %}{{ data.offer | upcase }}{% endif %}",
    "{% for i in data.items %}{{ i }}{% if contact.name == i %}!{% endif %}{% endfor %}",
    "{{ workspace.brand }}{% unless contact.tags contains 'x' %}-{% endunless %}",
    "{% case contact.plan %}{% when 'pro' %}P{% else %}{{ data.n }}{% endcase %}",
    # Plain lookups take a fast path: every kind of value must print as python-liquid does.
    "<b>{{ contact.name }}</b>{{ contact.odd }}{{ contact.tags[0] }}{{ contact.tags[-1] }}",
    "{{ contact.tags[5] }}|{{ contact.tags.size }}|{{ contact.odd.a }}|{{ contact.missing.x }}",
    "{{ contact.name | upcase }}|{{ contact.odd | capitalize | strip }}|{{ contact.x | downcase }}",
]
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(st.characters(blacklist_characters="\r"), max_size=5),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(
    source=st.sampled_from(SOURCES),
    # python-liquid's own buffer turns a lone CR into LF; ours keeps what the trait holds.
    name=st.one_of(st.none(), st.text(st.characters(blacklist_characters="\r"), max_size=8)),
    vip=st.booleans(),
    plan=st.sampled_from(["pro", "free", None]),
    items=st.lists(st.text(max_size=3), max_size=4),
    n=st.integers(-5, 5),
    tags=st.lists(st.sampled_from(["x", "y"]), max_size=2),
)
def test_a_bound_render_equals_a_whole_render(
    source: str,
    name: str | None,
    vip: bool,
    plan: str | None,
    items: list[str],
    n: int,
    tags: list[str],
) -> None:
    shared = {"data": {"items": items, "n": n, "offer": "sale"}, "workspace": {"brand": "B"}}
    contact = {"name": name, "vip": vip, "plan": plan, "tags": tags}
    piece = compile_piece("f", source)
    assert piece.template is not None
    whole = piece.template.render(**shared, contact=contact)
    assert piece.bind(shared).render({"contact": contact}) == whole
