"""helmyaml against answers of helm's own reader (sigs.k8s.io/yaml v1.6 with go-yaml v2.4,
the versions helm 3.22 and 4.3 build with), recorded from a Go program over the same texts."""

from __future__ import annotations

import json
import math

import pytest

from reconciler.repo import helmyaml, yamldoc

# (plain scalar as a value, what helm's JSON of {"v": value} is)
VALUES = [
    ("y", '{"v":true}'),
    ("Y", '{"v":true}'),
    ("yes", '{"v":true}'),
    ("ON", '{"v":true}'),
    ("off", '{"v":false}'),
    ("n", '{"v":false}'),
    ("NO", '{"v":false}'),
    ("~", '{"v":null}'),
    ("null", '{"v":null}'),
    ("NULL", '{"v":null}'),
    ("nULL", '{"v":"nULL"}'),
    ("", '{"v":null}'),
    ("0x1F", '{"v":31}'),
    ("0X1F", '{"v":31}'),
    ("0o17", '{"v":15}'),
    ("0755", '{"v":493}'),
    ("08", '{"v":8}'),
    ("0b101", '{"v":5}'),
    ("-0b101", '{"v":-5}'),
    ("0b-101", '{"v":-5}'),
    ("+12", '{"v":12}'),
    ("1_000", '{"v":1000}'),
    ("_1", '{"v":"_1"}'),
    ("1_", '{"v":1}'),
    ("0x", '{"v":"0x"}'),
    ("1e3", '{"v":1000}'),
    ("7e10", '{"v":70000000000}'),
    ("01443e5", '{"v":144300000}'),
    (".5", '{"v":0.5}'),
    ("._5", '{"v":"._5"}'),
    (".5_0", '{"v":0.5}'),
    ("1e400", '{"v":"1e400"}'),
    ("1e-400", '{"v":0}'),
    ("12:30", '{"v":"12:30"}'),
    ("2024-01-01", '{"v":"2024-01-01"}'),
    ("9223372036854775808", '{"v":9223372036854776000}'),
    ("18446744073709551615", '{"v":18446744073709552000}'),
    ("12345678901234567890", '{"v":12345678901234567000}'),
    ("123456789012345678901234567890", '{"v":1.2345678901234568e+29}'),
    ("1e21", '{"v":1e+21}'),
    ("1.0", '{"v":1}'),
    ("0x1p-2", '{"v":"0x1p-2"}'),
    ("inf", '{"v":"inf"}'),
]

# (plain scalar as a key, the key helm makes of it; None where helm refuses the key)
KEYS = [
    ("8080", "8080"),
    ("-1", "-1"),
    ("on", "true"),
    ("y", "true"),
    ("0x1F", "31"),
    ("007", "7"),
    ("1.5", "1.5"),
    ("1.50", "1.5"),
    ("0.1", "0.1"),
    ("3.14159265358979", "3.1415927"),
    ("1e6", "1e+06"),
    ("123456.0", "123456"),
    ("1234567.0", "1.234567e+06"),
    ("0.0001", "0.0001"),
    ("0.00001", "1e-05"),
    ("1e300", ".inf"),
    (".inf", ".inf"),
    (".Inf", ".inf"),
    ("-.inf", "-.inf"),
    (".nan", ".nan"),
    ("true", "true"),
    ("True", "true"),
    ("~", None),
    ("18446744073709551615", None),
    ("9223372036854775807", "9223372036854775807"),
    ("-0.0", "-0"),
    ("2024-01-01", "2024-01-01"),
    ("12:30", "12:30"),
]


@pytest.mark.parametrize(("text", "helm"), VALUES)
def test_values_are_resolved_as_helm_resolves_them(text: str, helm: str) -> None:
    tag, value = helmyaml.resolve(text)
    mine = json.dumps({"v": helmyaml.canonical(value)}, separators=(",", ":"))
    assert json.loads(mine) == json.loads(helm)
    assert (tag == helmyaml.TAG_STR) == isinstance(json.loads(helm)["v"], str)


@pytest.mark.parametrize(("text", "helm"), KEYS)
def test_keys_become_the_strings_helm_makes(text: str, helm: str | None) -> None:
    tag, value = helmyaml.resolve(text)
    if helm is None:
        with pytest.raises(helmyaml.KeyProblem):
            helmyaml.helm_key(tag, value)
    else:
        assert helmyaml.helm_key(tag, value) == helm


def test_nan_and_infinity_are_refused_as_values() -> None:
    for text in (".nan", ".inf", "-.Inf", "+.INF"):
        value = helmyaml.resolve(text)[1]
        assert isinstance(value, float)
        assert not math.isfinite(value)
        with pytest.raises(helmyaml.ValueProblem):
            helmyaml.canonical({"v": value})


def test_same_tells_booleans_from_numbers_and_ignores_representation() -> None:
    assert not helmyaml.same(True, 1)
    assert not helmyaml.same("1", 1)
    assert helmyaml.same(helmyaml.canonical(1e3), helmyaml.canonical(1000))
    assert helmyaml.same(helmyaml.canonical(-0.0), 0)
    big = helmyaml.canonical(12345678901234567890)
    assert helmyaml.same(big, helmyaml.canonical(json.loads("12345678901234567000")))


def test_dumps_is_json_that_yaml_reads_back_unchanged() -> None:
    values = {
        "y": "y",
        "nel": "a\x85b",
        "ls": "\u2028",
        "bom": "\ufeff",
        "del": "\x7f",
        "nul": "\x00",
        "emoji": "😀",
        "big": 12345678901234567000,
        "n": -0.0,
    }
    text = helmyaml.dumps(values)
    assert json.loads(text) == values
    assert text.isascii() is False  # unicode stays readable: only what YAML folds is escaped
    for raw in ("\x85", "\u2028", "\ufeff", "\x7f"):
        assert raw not in text
    parsed, problems = yamldoc.parse_values(text)
    assert problems == []
    assert parsed == values
