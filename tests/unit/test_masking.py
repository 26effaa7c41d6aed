"""Secret masking, message bounding and terminal escaping: pure text functions."""

from __future__ import annotations

import base64
import json

import pytest

from reconciler.desired import ClusterValues, ValuesSource
from reconciler.excerpt import bounded, one_line
from reconciler.masking import SecretMask, go_json, go_quote
from reconciler.model import DesiredState, Policy
from reconciler.reconcile import Observation, _secret_strings
from reconciler.terminal import for_terminal

PEM = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcN\n-----END KEY-----\n"
VALUES = {
    "db": {"password": 'p"w<&>\\x-Secret'},
    "hosts": ["alpha-host-1.internal", {"inner": "nested-in-a-list"}],
    "pem": PEM,
    "pin": "demo",
    "port": 54321,
    "enabled": True,
}


def observation(values: dict[str, object]) -> Observation:
    secret = ValuesSource(shared=values, per_release={})
    cluster = ClusterValues(config_map=ValuesSource({}, {}), secret=secret)
    desired = DesiredState("inst", "rev", Policy(), ())
    return Observation(desired, {}, _secret_strings(cluster))


MASK = observation(VALUES).mask


@pytest.mark.parametrize(
    "form",
    [
        'p"w<&>\\x-Secret',  # raw (fail, required)
        'p\\"w<&>\\\\x-Secret',  # %q, the API server's Invalid value: "..."
        'p\\"w\\u003c\\u0026\\u003e\\\\x-Secret',  # toJson (Go escapes <>&)
        json.dumps('p"w<&>\\x-Secret'),  # JSON without HTML escaping
        json.dumps(json.dumps('p"w<&>\\x-Secret')),  # JSON printed with %q
        "alpha-host-1.internal",  # a list item
        "nested-in-a-list",  # a mapping inside a list
        "MIIBOgIBAAJBAKj34GkxFhD90vcN",  # one line of a multi-line value
        json.dumps(PEM)[1:-1],  # the multi-line value JSON-escaped
        base64.b64encode(b'p"w<&>\\x-Secret').decode(),  # b64enc
        "54321",  # a number
    ],
)
def test_every_encoding_of_a_secret_value_is_masked(form: str) -> None:
    masked = MASK(f"Error: values: {form} (at /x)")
    assert form not in masked
    assert "***" in masked
    assert masked.startswith("Error: values: ")
    assert masked.endswith(" (at /x)")


def test_short_values_are_masked_as_words_only() -> None:
    text = "`helm install r-demo` exited 1: pin=demo, templates/demo.yaml, demonstrate, got demo."
    assert MASK(text) == (
        "`helm install r-demo` exited 1: pin=***, templates/demo.yaml, demonstrate, got ***."
    )


def test_booleans_are_not_secrets_and_unrelated_text_stays() -> None:
    text = 'values: {"enabled": true} failed at revision 3'
    assert MASK(text) == text


def test_go_encoders_follow_go() -> None:
    assert go_quote('a"b\\c\nd\x01é\u200b') == 'a\\"b\\\\c\\nd\\x01é\\u200b'
    assert go_json("<a&b>\n") == "\\u003ca\\u0026b\\u003e\\n"


def test_no_secret_values_mask_nothing() -> None:
    assert not SecretMask(())
    assert SecretMask(())("text") == "text"


def test_bounded_keeps_head_and_tail() -> None:
    text = "INSTALLATION FAILED: first line\n" + "x" * 5000 + "\n- at '/replicas': want integer"
    cut = bounded(text, 300)
    assert len(cut) <= 300
    assert cut.startswith("INSTALLATION FAILED")
    assert cut.endswith("- at '/replicas': want integer")
    assert "characters cut" in cut
    assert bounded("short", 300) == "short"


def test_one_line_joins_lines() -> None:
    assert one_line("a:\n\t* b\n\n  c") == "a: | * b | c"


def test_terminal_escaping_shows_control_characters() -> None:
    hostile = "key\x1b[2J\x1b[Hin sync\r\x07\u202eevil\x9b"
    shown = for_terminal(hostile)
    assert "\x1b" not in shown
    assert "\r" not in shown
    assert "\x07" not in shown
    assert "\u202e" not in shown
    assert "\x9b" not in shown
    assert shown == "key\\e[2J\\e[Hin sync\\r\\x07\\u202eevil\\x9b"
    assert for_terminal("a\nb", keep_newlines=True) == "a\nb"
    assert for_terminal("a\nb") == "a\\nb"


def test_a_numeric_secret_is_masked_as_helm_prints_numbers() -> None:
    # Helm holds numbers as float64: `{{ .Values.pin }}` prints 12345678 as 1.2345678e+07.
    mask = SecretMask.of({"pin": 12345678, "limit": 1000000, "ratio": 1000.0})
    text = 'pin "1.2345678e+07", limit 1e+06, ratio 1000, raw 12345678'
    assert mask(text) == 'pin "***", limit ***, ratio ***, raw ***'
