"""The integrations import their frameworks and SDKs lazily; `import banyan` imports none."""

from __future__ import annotations

import subprocess
import sys

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
