import pytest

from connector.errors import ExtractError
from connector.template import Template

DOC = {
    "title": "Blue kettle",
    "body": "Boils fast.",
    "price": 25,
    "ratio": 0.5,
    "tags": ["kitchen", "steel"],
    "address": {"city": "Lyon", "geo": {"lat": 45.7}},
    "empty": "",
    "none": None,
    "flag": True,
    "obj": {"a": 1},
    "mixed": ["a", {"b": 1}],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{title}", "Blue kettle"),
        ("{title}. {body}", "Blue kettle. Boils fast."),
        ("{address.city}", "Lyon"),
        ("{address.geo.lat}", "45.7"),
        ("{tags}", "kitchen, steel"),
        ("{tags.1}", "steel"),
        ("{price} EUR", "25 EUR"),
        ("{ratio}", "0.5"),
        ("{flag}", "true"),
        ("{title} {subtitle?}", "Blue kettle"),
        ("{title}{none?}!", "Blue kettle!"),
        ("{{literal}} {title}", "{literal} Blue kettle"),
        ("  {title}  ", "Blue kettle"),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert Template.parse(template).render(DOC) == expected


@pytest.mark.parametrize(
    ("template", "kind", "words"),
    [
        ("{subtitle}", "missing_field", "'subtitle' is missing"),
        ("{none}", "missing_field", "'none' is null"),
        ("{empty}", "empty_field", "'empty' is empty"),
        ("{obj}", "wrong_type", "'obj' is an object"),
        ("{mixed}", "wrong_type", "'mixed' is a list"),
        ("{address.street}", "missing_field", "'address.street' is missing"),
        ("{tags.5}", "missing_field", "'tags.5' is missing"),
        ("{title.x}", "missing_field", "'title.x' is missing"),
    ],
)
def test_render_errors_say_what_and_where(template: str, kind: str, words: str) -> None:
    with pytest.raises(ExtractError) as e:
        Template.parse(template).render(DOC)
    assert e.value.kind == kind
    assert words in str(e.value)


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("no fields", "names no field"),
        ("{title", "unbalanced '{'"),
        ("title}", "unbalanced '}'"),
        ("{ti tle}", "not a field name"),
        ("{}", "not a field name"),
    ],
)
def test_parse_errors(template: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Template.parse(template)


def test_fields_listed() -> None:
    assert Template.parse("{a}. {b.c?} {{x}}").fields == ["a", "b.c"]
