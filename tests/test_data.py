"""The asset registry: hashes, mirror and cache lookup, atomic downloads, clear errors."""

import hashlib
import os
import urllib.request
from pathlib import Path

import pytest

from chollet_viz import data
from chollet_viz.data import Asset, AssetError

pytestmark = pytest.mark.backend_independent  # conftest.py: on the TensorFlow job only

MIRROR = os.environ.get("CHOLLET_VIZ_MIRROR")
needs_mirror = pytest.mark.skipif(
    not (MIRROR and Path(MIRROR, "SHA256SUMS").is_file()), reason="needs the offline mirror"
)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty mirror and an empty cache."""
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    monkeypatch.setenv(data.CACHE_ENV, str(cache))
    return mirror, cache


def fake_asset(monkeypatch, name, payload: bytes, urls=()):
    asset = Asset(name=name, path=f"files/{name}", sha256=hashlib.sha256(payload).hexdigest(), urls=tuple(urls))
    monkeypatch.setitem(data.registry(), name, asset)
    return asset


@needs_mirror
def test_registry_hashes_equal_the_mirror_sha256sums():
    sums = {}
    for line in Path(MIRROR, "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        sums[rel.removeprefix("./")] = digest
    checked = 0
    for asset in data.registry().values():
        if asset.is_directory:
            for rel, digest in asset.manifest.items():
                assert sums[rel] == digest, rel
                checked += 1
        elif asset.path in sums:  # project-made artifacts (the trained model) are not in the mirror
            assert sums[asset.path] == asset.sha256, asset.name
            checked += 1
    assert checked == len(sums)  # every mirror file is registered


@needs_mirror
def test_fetch_verifies_and_returns_the_mirror_file():
    path = data.fetch("cat.1700.jpg")
    assert path == Path(MIRROR, "images", "cat.1700.jpg")
    assert data.sha256_of(path) == data.get_asset("cat.1700.jpg").sha256


def test_unknown_asset_lists_the_registered_names():
    with pytest.raises(AssetError, match=r"Unknown asset 'nope'.*cat\.1700\.jpg"):
        data.fetch("nope")


def test_corrupt_mirror_file_is_an_error(isolated, monkeypatch):
    mirror, _ = isolated
    asset = fake_asset(monkeypatch, "blob", b"the right bytes")
    (mirror / "files").mkdir()
    (mirror / asset.path).write_bytes(b"the wrong bytes")
    with pytest.raises(AssetError, match=r"'blob'.*has sha256 .* expected " + asset.sha256):
        data.fetch("blob")


def test_download_goes_to_cache_and_is_verified(isolated, monkeypatch, tmp_path):
    _, cache = isolated
    source = tmp_path / "served.bin"
    source.write_bytes(b"payload")
    fake_asset(monkeypatch, "blob", b"payload", urls=[source.as_uri()])
    path = data.fetch("blob")
    assert path == cache / "files" / "blob" and path.read_bytes() == b"payload"
    source.unlink()  # now only the cache has it
    assert data.fetch("blob") == path


def test_hash_mismatch_on_download_leaves_nothing(isolated, monkeypatch, tmp_path):
    _, cache = isolated
    source = tmp_path / "served.bin"
    source.write_bytes(b"tampered")
    fake_asset(monkeypatch, "blob", b"payload", urls=[source.as_uri()])
    with pytest.raises(AssetError, match=r"'blob'.*not available.*has sha256"):
        data.fetch("blob")
    assert not any(p.is_file() for p in cache.rglob("*")), list(cache.rglob("*"))


def test_interrupted_download_leaves_nothing(isolated, monkeypatch):
    _, cache = isolated
    fake_asset(monkeypatch, "blob", b"x" * 100, urls=["https://example.invalid/blob"])

    class Interrupted:
        def __init__(self):
            self.calls = 0

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt  # the user pressed Ctrl-C mid-download
            return b"x" * 10

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Interrupted())
    with pytest.raises(KeyboardInterrupt):
        data.fetch("blob")
    assert not any(p.is_file() for p in cache.rglob("*")), list(cache.rglob("*"))


def test_missing_asset_offline_says_where_it_looked_and_how_to_get_it(isolated, monkeypatch, tmp_path):
    mirror, cache = isolated
    fake_asset(monkeypatch, "blob", b"payload", urls=[(tmp_path / "gone.bin").as_uri()])
    with pytest.raises(AssetError) as info:
        data.fetch("blob")
    message = str(info.value)
    assert str(mirror / "files" / "blob") in message
    assert str(cache / "files" / "blob") in message
    assert "gone.bin" in message and data.MIRROR_ENV in message


def test_missing_asset_without_mirror_variable_says_so(isolated, monkeypatch):
    monkeypatch.delenv(data.MIRROR_ENV)
    fake_asset(monkeypatch, "blob", b"payload")
    with pytest.raises(AssetError, match=f"{data.MIRROR_ENV} is not set.*no download URL"):
        data.fetch("blob")


@needs_mirror
def test_directory_asset_is_fully_verified(monkeypatch):
    root = data.fetch("dogs_vs_cats")
    assert root == Path(MIRROR, "dogs_vs_cats")
    assert len(data.get_asset("dogs_vs_cats").manifest) == 4000
