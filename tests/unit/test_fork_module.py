"""Fork handling: one ``os.register_at_fork``, weakly held loggers, lazy framework hooks."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import banyan
from banyan import _fork

COUNT_REGISTRATIONS = textwrap.dedent(
    """
    import os
    import sys

    banyan_calls = []
    real = os.register_at_fork

    def counting(**hooks):
        if any(h.__module__.startswith("banyan") for h in hooks.values()):
            banyan_calls.append(hooks)
        real(**hooks)

    os.register_at_fork = counting
    import banyan

    # Each with its own spool, whose lock is held across forks too.
    loggers = [banyan.PromptStackLogger(api_key="psk_unit", base_url="http://127.0.0.1:9",
                                        spool_dir=f"{sys.argv[1]}/{n}") for n in range(3)]
    for logger in loggers:
        logger.shutdown(timeout=1)
    print(len(banyan_calls))
    """
)


def _run(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_integrations_import_no_framework() -> None:
    """Importing the celery and gunicorn hooks loads neither framework (nor billiard, kombu)."""
    code = (
        "import sys, banyan.integrations.celery, banyan.integrations.gunicorn; "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'celery', 'billiard', 'kombu', 'gunicorn'}))"
    )
    assert _run(code) == "[]"


def test_register_at_fork_is_called_once_for_many_loggers(tmp_path: Path) -> None:
    """banyan registers its fork hooks once per process, not once per module or logger."""
    assert _run(COUNT_REGISTRATIONS, str(tmp_path)) == "1"


def test_loggers_are_held_weakly() -> None:
    """The fork registry tracks a logger without keeping it alive."""
    logger = banyan.PromptStackLogger(
        api_key="psk_unit", base_url="http://127.0.0.1:9", spool_dir=False
    )
    ref = weakref.ref(logger)
    assert logger in _fork._hooks.live
    del logger
    gc.collect()
    assert ref() is None
