"""Every engine's management: projects, keys, prompts, branches and experiments."""

from __future__ import annotations

import pytest

from banyan import _routing
from banyan.server._auth import hash_key
from banyan.server.store import Conflict, NotFound, Store

from .conftest import StoreTarget
from .records import on_engine


def _body(content: str = "hello", **fields: object) -> dict[str, object]:
    base = {"content": content, "branch": "main", "version": None, "message": "",
            "metadata": {"k": 1}, "enable_logging": True}  # fmt: skip
    return {**base, **fields}


def config(exp_id: str, traffic_bp: int = 10_000) -> _routing.Experiment:
    """A one-variant experiment on version "1"."""
    variant = _routing.Variant(f"var_{exp_id}", "1", 10_000, "", "v1")
    return _routing.Experiment(id=exp_id, sticky_key="user_id", seed=exp_id,
                               variants=(variant,), traffic_bp=traffic_bp, name="e")  # fmt: skip


def test_bootstrap_creates_the_default_project_and_one_key_once(store: StoreTarget) -> None:
    """bootstrap() makes a project and an admin key; again, with no key, it creates nothing."""

    async def scenario(db: Store) -> None:
        first = await db.bootstrap(None)
        again = await db.bootstrap(None)
        assert first.created
        assert first.key
        assert (again.project_id, again.key, again.created) == (first.project_id, None, False)
        principal = await db.principal(hash_key(first.key))
        assert principal is not None
        assert (principal.project_name, principal.admin) == ("default", True)
        project = await db.create_project("second", hash_key("psk_x"), "psk_x")
        with pytest.raises(Conflict):
            await db.create_project("second", hash_key("psk_y"), "psk_y")
        other = await db.principal(hash_key("psk_x"))
        assert other is not None
        assert (other.project_id, other.admin) == (project["id"], False)

    on_engine(store, scenario)


def test_prompts_versions_and_branches(store: StoreTarget) -> None:
    """Versions number themselves per branch, labels are unique, branches start from a source."""

    async def scenario(db: Store) -> None:
        prj = (await db.bootstrap(None)).project_id
        prompt = await db.create_prompt(prj, "p", _body())
        assert prompt["branches"] == [{"name": "main", "latest_version": "1", "versions": 1}]
        with pytest.raises(Conflict):
            await db.create_prompt(prj, "p", _body())
        await db.add_version(prompt["id"], "main", "v3", version="3")
        second = await db.add_version(prompt["id"], "main", "two")
        # As on SQLite: the next number past the last seq, skipping labels taken.
        assert second["version"] == "4"
        with pytest.raises(Conflict):
            await db.add_version(prompt["id"], "main", "x", version="3")
        await db.create_branch(prompt["id"], "dev", "main")
        with pytest.raises(NotFound):
            await db.create_branch(prompt["id"], "qa", "nope")
        latest = await db.version(prompt["id"], "dev", None)
        assert latest is not None
        assert latest["content"] == "two"
        assert [v["version"] for v in await db.versions(prompt["id"], None)] == [
            "4", "1", "3", "4"]  # fmt: skip
        await db.update_prompt(prj, prompt["id"], False, None)
        (listed,) = await db.prompts(prj)
        assert (listed["enable_logging"], listed["metadata"]) == (False, {"k": 1})
        await db.delete_prompt(prj, prompt["id"])
        assert await db.prompt(prj, "p") is None

    on_engine(store, scenario)


def test_experiments_start_stop_and_one_running_per_branch(store: StoreTarget) -> None:
    """An experiment starts, a second one on its branch is refused, stopping frees the branch."""

    async def scenario(db: Store) -> None:
        prj = (await db.bootstrap(None)).project_id
        prompt = await db.create_prompt(prj, "p", _body())
        started = await db.create_experiment(prj, prompt["id"], "main", config("e1"),
                                                start=True)  # fmt: skip
        assert (started["status"], started["variants"][0]["content"]) == ("running", "hello")
        await db.create_experiment(prj, prompt["id"], "main", config("e2"), start=False)
        with pytest.raises(Conflict):
            await db.set_experiment_status(prj, "e2", "running")
        running = await db.running_experiment(prj, prompt["id"], "main")
        assert running is not None
        assert running.id == "e1"
        await db.set_experiment_status(prj, "e1", "stopped")
        assert (await db.set_experiment_status(prj, "e2", "running"))["status"] == "running"
        assert [e["id"] for e in await db.experiments(prj, "p")] == ["e1", "e2"]
        assert await db.experiments(prj, "other") == []
        with pytest.raises(NotFound):
            await db.experiment(prj, "nope")

    on_engine(store, scenario)


def test_lookups_by_id_keys_and_absent_things(store: StoreTarget) -> None:
    """project, add_key, prompt_by_id, branches, experiment_config; absent ones None or NotFound."""

    async def scenario(db: Store) -> None:
        prj = (await db.bootstrap(None)).project_id
        project = await db.project(prj)
        assert project is not None
        assert (project["id"], project["name"]) == (prj, "default")
        assert await db.project("prj_none") is None
        await db.add_key(prj, hash_key("psk_lbl"), "psk_lbl", admin=False, label="ci")
        principal = await db.principal(hash_key("psk_lbl"))
        assert principal is not None
        assert (principal.project_id, principal.admin) == (prj, False)
        prompt = await db.create_prompt(prj, "p", _body())
        found = await db.prompt_by_id(prj, prompt["id"])
        assert found is not None
        assert found["name"] == "p"
        assert await db.prompt_by_id("prj_other", prompt["id"]) is None
        assert await db.branches(prompt["id"]) == prompt["branches"]
        await db.create_experiment(prj, prompt["id"], "main", config("e_c", 5_000), start=False)
        stored = await db.experiment_config(prj, "e_c")
        assert (stored.traffic_bp, stored.variants[0].content) == (5_000, "hello")
        assert await db.running_experiment(prj, prompt["id"], "main") is None
        with pytest.raises(NotFound):
            await db.experiment_config(prj, "nope")
        await db.delete_prompt(prj, prompt["id"])
        with pytest.raises(NotFound):
            await db.delete_prompt(prj, prompt["id"])

    on_engine(store, scenario)
