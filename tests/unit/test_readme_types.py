"""The README's Python examples pass ``mypy --strict`` as written."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mypy import api

README = Path(__file__).resolve().parents[2] / "README.md"
#: What the examples leave to the reader: the model call, the user's text, the app.
PLACEHOLDERS = """
import banyan

user_input = "Hello"


def my_model(prompt: str, text: str) -> str:
    return prompt + text


def handle_request(text: str) -> None:
    pass

"""


#: mypy --strict without a cache reads httpx's and msgspec's stubs anew for each check: a
#: minute on a quiet core, more on a loaded one (the 120 s default is a hang guard).
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(autouse=True)
def _recursion_limit_kept() -> Iterator[None]:
    """mypy raises the interpreter's recursion limit and keeps it; later tests need ours."""
    limit = sys.getrecursionlimit()
    yield
    sys.setrecursionlimit(limit)


def test_readme_examples_pass_mypy_strict(tmp_path: Path) -> None:
    """Every ```python block of README.md type-checks under --strict (no union-attr errors)."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 5
    for number, block in enumerate(blocks):
        # A block that opens with its imports is a whole file; the others continue one.
        whole = re.match(r"(import|from) ", block)
        prefix = PLACEHOLDERS.replace("import banyan\n", "") if whole else PLACEHOLDERS
        (tmp_path / f"example_{number}.py").write_text(prefix + block)
    out, err, status = api.run(["--strict", "--no-incremental", str(tmp_path)])
    assert status == 0, out + err


def _strict_errors(path: Path, source: str) -> str:
    """mypy --strict's report on ``source`` written to ``path``, which must fail."""
    path.write_text(source)
    out, _, status = api.run(["--strict", "--no-incremental", str(path)])
    assert status == 1, out
    return out


def test_a_misspelt_or_invalid_option_is_a_mypy_error(tmp_path: Path) -> None:
    """configure()'s options are typed: a typo and a value outside a Literal fail mypy."""
    source = PLACEHOLDERS + (
        'banyan.configure(api_key="psk_x", flush_intervall=1)\n'
        'banyan.configure(api_key="psk_x", compression="lz4")\n'
        'banyan.PromptStackLogger(durability="safe")\n'
        "stats = banyan.get_stats()\n"
        'stats["logs_sentt"]\n'
    )
    out = _strict_errors(tmp_path / "typos.py", source)
    assert out.count("[call-arg]") == 1
    assert out.count("[arg-type]") == 2
    assert out.count("[typeddict-item]") == 1


def test_config_fields_are_the_literal_types_of_the_public_options(tmp_path: Path) -> None:
    """Config's closed-set fields are Literals: read back as one, a wrong value a mypy error."""
    source = (
        "from typing import Literal\n"
        "from banyan._config import Config\n"
        'config = Config(api_key="psk_x", compression="lz4", durability="safe",\n'
        '                spool_sync="sometimes")\n'
        'compression: Literal["gzip", "zstd"] | None = config.compression\n'
        'durability: Literal["buffered", "durable"] = config.durability\n'
        'spool_sync: Literal["none", "interval", "always"] = config.spool_sync\n'
    )
    out = _strict_errors(tmp_path / "fields.py", source)
    assert out.count("[arg-type]") == 3, out
    assert out.count("error:") == 3, out


def test_a_before_send_hook_must_tell_the_kinds_apart(tmp_path: Path) -> None:
    """LogEvent is PromptEvent | ScoreEvent: a record's field written without testing ``kind``
    is a mypy error; after the test, usage and score fields type-check."""
    source = PLACEHOLDERS + (
        "def hook(event: banyan.LogEvent) -> banyan.LogEvent:\n"
        '    event["input"] = "x"\n'
        '    if event["kind"] == "prompt":\n'
        '        print(event["input"], event.get("cost"), event["input_tokens"])\n'
        "    else:\n"
        '        print(event["name"], event["value"] is True, event["sticky_value"])\n'
        "    return event\n"
        'banyan.configure(api_key="psk_x", before_send=hook)\n'
    )
    out = _strict_errors(tmp_path / "hook.py", source)
    assert out.count("error:") == 1, out
    assert "[typeddict-unknown-key]" in out
