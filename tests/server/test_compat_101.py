"""banyan-sdk 1.0.1, the released client, works unchanged against this server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from serverproc import Server

from .helpers import call, create_prompt

#: Pins what 1.0.1 pulls in (requests, typer, rich, pyyaml): the compat101 group.
LOCK = str(Path(__file__).parents[2] / "requirements-lock.txt")
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import banyan
    from banyan import PromptStackLogger

    assert banyan.__version__ == "1.0.1", banyan.__file__
    base_url, key, experiment_id = sys.argv[1:4]
    logger = PromptStackLogger(api_key=key, base_url=base_url, flush_interval=0.2)
    prompt = logger.get_prompt("compat-prompt")
    assert prompt is not None and prompt.content == "Hello v2", prompt
    routed = logger.experiment(experiment_id, "user_id", "user-7")
    assert routed is not None and routed.metadata["experiment_id"] == experiment_id, routed
    ok = [logger.log_prompt(input=f"q{i}", output=f"a{i}", prompt_data=prompt, model="m",
                            metadata={"i": i}, duration_ms=i + 1) for i in range(90)]
    ok += [logger.log_prompt(input=f"e{i}", output="x", prompt_data=routed) for i in range(10)]
    logger.shutdown(timeout=60)
    print(json.dumps({"ok": sum(ok), "stats": logger.get_stats()}))
    """
)


def _venv(root: Path) -> Path:
    """A venv with banyan-sdk 1.0.1, reused when ``root`` holds one already."""
    python = root / "bin" / "python"
    probe = [str(python), "-c", "import banyan; assert banyan.__version__ == '1.0.1'"]
    # Its python runs in the venv's root: from the repository, sys.path[0] finds the
    # 2.x banyan, so the probe failed and the venv was reinstalled on every run.
    if python.exists():
        found = subprocess.run(probe, cwd=root, capture_output=True, timeout=60, check=False)
        if found.returncode == 0:
            return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, timeout=120)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "banyan-sdk==1.0.1", "-c", LOCK],
        cwd=root,
        check=True,
        timeout=240,
        capture_output=True,
    )
    return python


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_101_client_fetches_and_logs_100_records(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The 1.0.1 package fetches a prompt, routes via the server and logs exactly 100 records."""
    cached = os.environ.get("BANYAN_COMPAT_VENV")
    python = _venv(Path(cached) if cached else tmp_path_factory.mktemp("venv101"))
    create_prompt(server, "compat-prompt", "Hello v1", "Hello v2")
    experiment = call(
        server,
        "POST",
        "/api/v2/experiments",
        json={
            "prompt": "compat-prompt",
            "variants": [{"version": "1", "percentage": 50}, {"version": "2", "percentage": 50}],
        },
    )
    assert experiment.status_code == 201
    script = Path(tmp_path_factory.mktemp("compat")) / "compat.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [str(python), str(script), server.base_url, server.api_key, experiment.json()["id"]],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=script.parent,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] == 100
    assert len(server.stored_ids()) == 100
    summary = server.summary()
    assert (summary["stored"], summary["single"]) == (100, 100)
    results = call(server, "GET", f"/api/v2/experiments/{experiment.json()['id']}/results").json()
    assert sum(v["records"] for v in results["variants"]) == 10, results["unmatched"]
