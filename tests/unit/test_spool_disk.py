"""The spool on an unfriendly disk: little room, a loose umask, a directory others can write."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import banyan
from banyan import _spooldir
from banyan._spool import Spool

PAD = b"p" * 1000


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """umask 0 for the test, as in a container whose entrypoint sets none."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_a_disk_without_room_for_a_full_segment_gets_smaller_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Preallocating 4 MiB fails (ENOSPC above 1 MiB here): smaller segments store everything."""
    real_fill = _spooldir.fill

    def small_disk(fd: int, size: int) -> None:
        if size > 1 << 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fill(fd, size)

    monkeypatch.setattr(_spooldir, "fill", small_disk)
    spool = Spool(tmp_path / "spool", segment_bytes=4 << 20)
    assert all(spool.append(PAD) for _ in range(300))
    spool.seal()
    assert spool.dropped == {}
    sizes = {path.stat().st_size for path in spool.directory.glob("*.seg")}
    assert sizes
    assert max(sizes) <= 1 << 20
    spool.close()


def test_directories_the_sdk_creates_are_private_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loose_umask: None
) -> None:
    """With umask 0, ~/.cache, ~/.cache/banyan, .../spool and the project's directory are 0700."""
    monkeypatch.delenv("BANYAN_SPOOL_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    logger = banyan.PromptStackLogger("psk_u", "http://127.0.0.1:9", durability="durable")
    try:
        assert logger.log_prompt("i", "o")
        assert logger._spool is not None
        made = [tmp_path / ".cache", tmp_path / ".cache/banyan", tmp_path / ".cache/banyan/spool",
                logger._spool.directory]  # fmt: skip
        assert [oct(stat.S_IMODE(path.stat().st_mode)) for path in made] == [oct(0o700)] * 4
    finally:
        logger.shutdown(0)


@pytest.mark.parametrize("how", ["world-writable", "group-writable", "someone else's"])
def test_an_unsafe_spool_dir_is_refused_at_construction(tmp_path: Path, how: str) -> None:
    """An existing spool_dir that others can write (or own) raises ConfigurationError."""
    directory = tmp_path / "shared"
    directory.mkdir()
    if how == "someone else's":
        if os.geteuid() != 0:
            pytest.skip("chown to another user needs root")
        os.chown(directory, 65534, 65534)
    else:
        os.chmod(directory, 0o777 if how == "world-writable" else 0o770)
    with pytest.raises(banyan.ConfigurationError, match=str(directory)):
        banyan.PromptStackLogger("psk_u", "http://127.0.0.1:9", spool_dir=str(directory))


def test_a_spool_dir_opened_to_others_later_is_refused_and_counted(tmp_path: Path) -> None:
    """Made world-writable after construction: appends are spool_error, nothing read from it."""
    spool = Spool(tmp_path / "spool", segment_bytes=64 << 10)
    assert spool.append(PAD)
    spool.seal()
    os.chmod(spool.directory, 0o777)
    assert not spool.append(PAD)
    assert spool.dropped == {"spool_error": 1}
    assert spool.last_error is not None
    assert "writable by others" in spool.last_error
    assert spool.claim() is None
    spool.close()
