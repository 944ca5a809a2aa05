"""PostgresStore management: projects, keys, prompts, branches and experiments."""

from __future__ import annotations

import pytest

from banyan import _routing
from banyan.server._auth import hash_key
from banyan.server.store import Conflict, NotFound, Store

from .records import opened, run


def _body(content: str = "hello", **fields: object) -> dict[str, object]:
    base = {"content": content, "branch": "main", "version": None, "message": "",
            "metadata": {"k": 1}, "enable_logging": True}  # fmt: skip
    return {**base, **fields}


def test_bootstrap_creates_the_default_project_and_one_key_once(pg_url: str) -> None:
    """bootstrap() makes a project and an admin key; again, with no key, it creates nothing."""

    async def scenario() -> None:
        store: Store = await opened(pg_url)
        try:
            first = await store.bootstrap(None)
            again = await store.bootstrap(None)
            assert first.created
            assert first.key
            assert (again.project_id, again.key, again.created) == (first.project_id, None, False)
            principal = await store.principal(hash_key(first.key))
            assert principal is not None
            assert (principal.project_name, principal.admin) == ("default", True)
            project = await store.create_project("second", hash_key("psk_x"), "psk_x")
            with pytest.raises(Conflict):
                await store.create_project("second", hash_key("psk_y"), "psk_y")
            other = await store.principal(hash_key("psk_x"))
            assert other is not None
            assert (other.project_id, other.admin) == (project["id"], False)
        finally:
            await store.close()

    run(scenario())


def test_prompts_versions_and_branches(pg_url: str) -> None:
    """Versions number themselves per branch, labels are unique, branches start from a source."""

    async def scenario() -> None:
        store: Store = await opened(pg_url)
        prj = (await store.bootstrap(None)).project_id
        try:
            prompt = await store.create_prompt(prj, "p", _body())
            assert prompt["branches"] == [{"name": "main", "latest_version": "1", "versions": 1}]
            with pytest.raises(Conflict):
                await store.create_prompt(prj, "p", _body())
            await store.add_version(prompt["id"], "main", "v3", version="3")
            second = await store.add_version(prompt["id"], "main", "two")
            # As on SQLite: the next number past the last seq, skipping labels taken.
            assert second["version"] == "4"
            with pytest.raises(Conflict):
                await store.add_version(prompt["id"], "main", "x", version="3")
            await store.create_branch(prompt["id"], "dev", "main")
            with pytest.raises(NotFound):
                await store.create_branch(prompt["id"], "qa", "nope")
            latest = await store.version(prompt["id"], "dev", None)
            assert latest is not None
            assert latest["content"] == "two"
            assert [v["version"] for v in await store.versions(prompt["id"], None)] == [
                "4", "1", "3", "4"]  # fmt: skip
            await store.update_prompt(prj, prompt["id"], False, None)
            (listed,) = await store.prompts(prj)
            assert (listed["enable_logging"], listed["metadata"]) == (False, {"k": 1})
            await store.delete_prompt(prj, prompt["id"])
            assert await store.prompt(prj, "p") is None
        finally:
            await store.close()

    run(scenario())


def test_experiments_start_stop_and_one_running_per_branch(pg_url: str) -> None:
    """An experiment starts, a second one on its branch is refused, stopping frees the branch."""

    def config(exp_id: str) -> _routing.Experiment:
        variant = _routing.Variant(f"var_{exp_id}", "1", 10_000, "", "v1")
        return _routing.Experiment(id=exp_id, sticky_key="user_id", seed=exp_id,
                                   variants=(variant,), traffic_bp=10_000, name="e")  # fmt: skip

    async def scenario() -> None:
        store: Store = await opened(pg_url)
        prj = (await store.bootstrap(None)).project_id
        try:
            prompt = await store.create_prompt(prj, "p", _body())
            started = await store.create_experiment(prj, prompt["id"], "main", config("e1"),
                                                    start=True)  # fmt: skip
            assert (started["status"], started["variants"][0]["content"]) == ("running", "hello")
            await store.create_experiment(prj, prompt["id"], "main", config("e2"), start=False)
            with pytest.raises(Conflict):
                await store.set_experiment_status(prj, "e2", "running")
            running = await store.running_experiment(prj, prompt["id"], "main")
            assert running is not None
            assert running.id == "e1"
            await store.set_experiment_status(prj, "e1", "stopped")
            assert (await store.set_experiment_status(prj, "e2", "running"))["status"] == "running"
            assert [e["id"] for e in await store.experiments(prj, "p")] == ["e1", "e2"]
            assert await store.experiments(prj, "other") == []
            with pytest.raises(NotFound):
                await store.experiment(prj, "nope")
        finally:
            await store.close()

    run(scenario())
