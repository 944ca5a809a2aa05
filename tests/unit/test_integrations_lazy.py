"""The integrations import their frameworks and SDKs lazily; `import banyan` imports none."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

FRAMEWORKS = ("fastapi", "starlette", "django", "flask", "openai", "anthropic", "celery")
MODULES = ("fastapi", "starlette", "django", "flask", "openai", "anthropic", "celery", "gunicorn")


def test_importing_banyan_and_every_integration_imports_no_framework() -> None:
    """banyan.integrations.X loads X only when used (Django loads .apps itself)."""
    imports = "; ".join(f"import banyan.integrations.{name}" for name in MODULES)
    code = (
        f"import sys, banyan; {imports}; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readmes_integration_imports_name_real_objects() -> None:
    """Every `from banyan.integrations... import` line of README's Integrations section works."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Integrations\n", 1)[1].split("\n## ", 1)[0]
    lines = re.findall(r"^from banyan\.integrations\.\w+ import \w+", section, re.M)
    assert len(lines) >= 3
    for line in lines:
        exec(line, {})
