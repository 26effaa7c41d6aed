"""The fast paths must agree with the authoritative ones whenever they answer.

fastyaml may decline any file, but a document it returns must be exactly what yamldoc
(libyaml) builds; fastschema must say "valid" exactly when jsonschema does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from reconciler.repo import fastyaml, yamldoc
from reconciler.repo.fastschema import UnsupportedSchema, compile_schema
from reconciler.repo.schemas import KINDS, schema_of
from tests.support import scalars
from tests.support.envfiles import EXAMPLES

TRICKY_SCALARS = [
    "yes",
    "No",
    "on",
    "OFF",
    "true",
    "~",
    "null",
    "",
    " ",
    "1",
    "-1",
    "+1",
    "0x1F",
    "0o17",
    "017",
    "1_000",
    "1:20",
    "1.5",
    ".5",
    "1e3",
    "1.0e+3",
    ".inf",
    "-.Inf",
    ".nan",
    "2024-01-31",
    "2024-01-31 10:00:00",
    "a b",
    "a  b",
    "a:b",
    "a: b",
    "a #b",
    "a#b",
    "-x",
    "- x",
    "x-",
    "=",
    "<<",
    "'q'",
    '"q"',
    "it's",
    "a,b",
    "[x]",
    "{x}",
    "*x",
    "&x",
    "!x",
    "%x",
    "@x",
    "`x`",
    "|",
    ">",
    "?x",
    "é",
    "x\ty",
    "oci://registry.example.com/charts",
    "1.0.0-g{ref}",
    "v1.2.3",
    "3f786850e387550fdab836ed7e6dc881de23001b",
    "0123456",
    "500m",
    "1Gi",
    "a/b.c_d-e",
]
KEYS = ["a", "b", "name", "values", "app.kubernetes.io/name", "x_y", "k-1", "c", "d", "e"]
ODD_KEYS = ["yes", "1", "null", "a b", "<<", "on"]
NOISE = [":", " ", "  ", "-", "- ", "#", " #", "'", '"', "{", "}", "[", "]", ",", "\t", "&a", "*a",
         "!", "|", ">", "?", "\n", "\n  ", "---\n", "...\n", "\r"]  # fmt: skip


def random_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        if rng.random() < 0.6:
            return rng.choice(TRICKY_SCALARS)
        return rng.choice([0, 1, -7, 2.5, True, False, None, "plain text", "x"])
    if roll < 0.75:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return random_mapping(rng, depth + 1)


def random_key(rng: random.Random) -> str:
    return rng.choice(ODD_KEYS if rng.random() < 0.03 else KEYS)


def random_mapping(rng: random.Random, depth: int) -> dict[str, Any]:
    return {random_key(rng): random_value(rng, depth) for _ in range(rng.randint(0, 5))}


def dumped(rng: random.Random, document: Any) -> str:
    style = rng.choice([False, None, True])
    indent = rng.choice([2, 2, 4])
    text: str = yaml.safe_dump(
        document, default_flow_style=style, indent=indent, sort_keys=False, allow_unicode=True
    )
    if rng.random() < 0.3:
        # A list at its parent key's indent, as many people write it.
        text = text.replace("\n  - ", "\n- ")
    return text


def mutated(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        if not text:
            break
        at = rng.randrange(len(text))
        choice = rng.random()
        if choice < 0.5:
            text = text[:at] + rng.choice(NOISE) + text[at:]
        elif choice < 0.8:
            text = text[:at] + text[at + 1 :]
        else:
            lines = text.split("\n")
            line = rng.randrange(len(lines))
            lines.insert(line, lines[line])
            text = "\n".join(lines)
    return text


def corpus() -> Iterator[str]:
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        if "/charts/" not in str(path) and "/.github/" not in str(path):
            yield path.read_text()
    # Every spelling helm reads in its own way, as a value and as a key, in both paths.
    for spelling in scalars.spellings():
        yield f"values:\n  k: {spelling}\n  l: [{spelling}]\n" if spelling else "values:\n  k:\n"
    for key in scalars.key_spellings():
        yield f"values:\n  {key}: 1\n"
    rng = random.Random(20260101)
    for _ in range(3000):
        text = dumped(rng, random_mapping(rng, 0))
        yield text
        yield mutated(rng, text)


def canonical(document: Any) -> str:
    return json.dumps(document, sort_keys=True)


def test_fastyaml_agrees_with_libyaml_whenever_it_answers() -> None:
    answered = 0
    total = 0
    for text in corpus():
        total += 1
        fast = fastyaml.load(text)
        if fast is None:
            continue
        answered += 1
        slow, problems = yamldoc.parse(text.encode())
        assert not problems, (text, problems)
        assert canonical(fast) == canonical(slow), text
    # Enough answers that the agreement means something: the random documents nest lists
    # in lists and flow in flow, which the fast path leaves to libyaml on purpose.
    assert answered > total * 0.1, (answered, total)


def test_every_example_file_takes_the_fast_path() -> None:
    files = [p for p in EXAMPLES.glob("*/**/*.yaml") if p.parts[-3] != "charts"]
    files = [p for p in files if "charts" not in p.parts and ".github" not in p.parts]
    assert files
    declined = [str(p) for p in files if fastyaml.load(p.read_text()) is None]
    assert declined == []


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # duplicate keys: yamldoc reports them
        "a: &x 1\nb: *x\n",
        "a: |\n  text\n",
        "a:\n\tb: 1\n",
        "- a\n",
        "a: b: c\n",
        "a: [1, [2]]\n",
        "a: {b: {c: 1}}\n",
        "yes: 1\n",
        "a: 'it''s'\n",
        '"a": 1\n',
        "a: 1\n---\nb: 2\n",
    ],
)
def test_fastyaml_declines_what_it_cannot_be_sure_of(text: str) -> None:
    assert fastyaml.load(text) is None


def test_fastyaml_reads_the_shapes_environment_files_use() -> None:
    text = (
        "apiVersion: reconciler/v1  # comment\n"
        "labels: {provider: aws, stage: production}\n"
        "dependsOn: [postgres, redis]\n"
        "values:\n"
        "  env:\n"
        "  - name: A\n"
        '    value: "1"\n'
        "  - name: B\n"
        "    value: x y\n"
        "  empty:\n"
        "  list:\n"
        "    - 1\n"
        "    - 2.5\n"
    )
    assert fastyaml.load(text) == {
        "apiVersion": "reconciler/v1",
        "labels": {"provider": "aws", "stage": "production"},
        "dependsOn": ["postgres", "redis"],
        "values": {
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "x y"}],
            "empty": None,
            "list": [1, 2.5],
        },
    }


def example_documents(kind: str) -> list[dict[str, Any]]:
    documents = []
    for path in EXAMPLES.rglob("*.yaml"):
        if "charts" in path.parts or ".github" in path.parts:
            continue
        document = yaml.safe_load(path.read_text())
        if document.get("kind") == kind:
            documents.append(document)
    return documents


def broken(rng: random.Random, document: Any) -> Any:
    """A copy of a document with a random value replaced, removed or added somewhere."""

    document = json.loads(json.dumps(document))
    node = document
    while isinstance(node, dict | list) and node and rng.random() < 0.6:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        if not isinstance(node[key], dict | list) or not node[key]:
            break
        node = node[key]
    if isinstance(node, dict) and node:
        key = rng.choice(list(node))
        roll = rng.random()
        if roll < 0.3:
            del node[key]
        elif roll < 0.8:
            node[key] = random_value(rng, 2)
        else:
            node[random_key(rng)] = random_value(rng, 3)
    elif isinstance(node, list) and node:
        node[rng.randrange(len(node))] = random_value(rng, 3)
    return document


@pytest.mark.parametrize("kind", KINDS)
def test_fastschema_agrees_with_jsonschema(kind: Any) -> None:
    schema = schema_of(kind)
    fast = compile_schema(schema)
    slow = Draft202012Validator(schema)
    rng = random.Random(kind)
    examples = example_documents(kind)
    verdicts = {True: 0, False: 0}
    for _ in range(4000):
        document = rng.choice(examples)
        for _ in range(rng.choice([0, 1, 1, 2])):
            document = broken(rng, document)
        expected = slow.is_valid(document)
        assert fast(document) == expected, document
        verdicts[expected] += 1
    assert min(verdicts.values()) > 400, verdicts


def test_fastschema_refuses_keywords_it_does_not_implement() -> None:
    with pytest.raises(UnsupportedSchema):
        compile_schema({"type": "object", "dependentRequired": {"a": ["b"]}})


def test_example_files_exist() -> None:
    assert (Path(EXAMPLES) / "projects").is_dir()


def test_a_scalar_the_fast_reader_declines_is_declined_every_time() -> None:
    # The first `.inf` fills the scalar cache; the second must not slip through from it.
    from reconciler.repo import fastyaml

    assert fastyaml.load("replicas: .inf\n") is None
    assert fastyaml.load("replicas: .inf\n") is None
