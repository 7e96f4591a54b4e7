"""daemon/template: `{name}` placeholders, doubled braces, stray braces, missing values."""

from __future__ import annotations

import re

import pytest

from daemon.template import MissingVariable, TemplateSyntaxError, placeholders, render


@pytest.mark.parametrize(("template", "names"), [
    ("", []),
    ("no placeholders", []),
    ("{name}", ["name"]),
    ("尊敬的{name}，您的积分{points}分将于{date}到期", ["name", "points", "date"]),
    ("{a}{b}{a}", ["a", "b", "a"]),
    ("{_x1} {X_2}", ["_x1", "X_2"]),
    ("{{name}}", []),  # doubled braces are literals, not a placeholder
    ("{{{name}}}", ["name"]),
    ("}}{{", []),
])
def test_placeholders_lists_names_in_order(template: str, names: list[str]) -> None:
    assert placeholders(template) == names


@pytest.mark.parametrize("template", [
    "{",
    "}",
    "a { b",
    "a } b",
    "{1abc}",  # a name must not start with a digit
    "{na-me}",
    "{ name }",
    "{}",
    "{name",
    "name}",
    "{{{",
    "{{name}",
    "{имя}",
])
def test_stray_braces_are_syntax_errors(template: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        placeholders(template)
    with pytest.raises(TemplateSyntaxError):
        render(template, {"name": "x", "1abc": "x", "na": "x", "me": "x", "имя": "x"})


def test_syntax_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        placeholders("oops {")


@pytest.mark.parametrize(("template", "values", "expected"), [
    ("Hello {name}", {"name": "World"}, "Hello World"),
    ("尊敬的{name}，积分{points}分", {"name": "林瓊", "points": "150"}, "尊敬的林瓊，积分150分"),
    ("{a}{a}", {"a": "x"}, "xx"),
    ("{{literal}}", {}, "{literal}"),
    ("{{{name}}}", {"name": "v"}, "{v}"),
    ("}}{{", {}, "}{"),
    ("price {p}", {"p": "1.50"}, "price 1.50"),
    ("unused ok", {"other": "x"}, "unused ok"),
    ("{x}", {"x": "{y}"}, "{y}"),  # values are inserted as they are, not rendered again
    ("{x}", {"x": ""}, ""),
    ("Здравствуйте, {name}!", {"name": "Иван"}, "Здравствуйте, Иван!"),
])
def test_render_fills_placeholders_and_unescapes_braces(
    template: str, values: dict[str, str], expected: str
) -> None:
    assert render(template, values) == expected


@pytest.mark.parametrize(("template", "values", "missing"), [
    ("{name}", {}, "name"),
    ("{a} {b}", {"a": "1"}, "b"),
    ("{Name}", {"name": "x"}, "Name"),  # names are case-sensitive
])
def test_render_reports_the_missing_variable(
    template: str, values: dict[str, str], missing: str
) -> None:
    with pytest.raises(MissingVariable) as info:
        render(template, values)
    assert info.value.name == missing


def _render_by_regex(template: str, values: dict[str, str]) -> str:
    """The regex substitution `render` used before templates were cut once per batch."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name:
            return values[name]
        return {"{{": "{", "}}": "}"}[match.group(0)]

    return re.sub(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}", replace, template)


@pytest.mark.parametrize("template", [
    "", "plain", "{a}", "x{a}y{b}z", "{{a}} {a} }}{{", "{{{a}}}", "尊敬的{name}，积分{points}",
])
def test_compiled_render_agrees_with_the_regex_reference(template: str) -> None:
    values = {"a": "1", "b": "{b}", "name": "林瓊", "points": "150"}
    assert render(template, values) == _render_by_regex(template, values)
