"""Asset registry: every external file the course uses, by name, with its sha256.

``fetch(name)`` resolves a name to a verified local path, looking in order at

1. the offline mirror named by the environment variable ``CHOLLET_VIZ_MIRROR``,
2. the local cache (``CHOLLET_VIZ_CACHE``, default ``~/.cache/chollet_viz``),
3. the network (the registry's URLs, tried in order).

Every file is checked against its sha256 each time it is resolved. Downloads go to
a temporary file in the cache folder and are renamed only once the hash matches, so an
interrupted or corrupt download never leaves a file behind that looks complete.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

MIRROR_ENV = "CHOLLET_VIZ_MIRROR"
CACHE_ENV = "CHOLLET_VIZ_CACHE"

_PACKAGE_DIR = Path(__file__).resolve().parent
# In a wheel the registry travels inside the package; in a checkout it lives in data/.
_REGISTRY_DIRS = (_PACKAGE_DIR / "_data", _PACKAGE_DIR.parent / "data")


class AssetError(RuntimeError):
    """An asset could not be found, downloaded or verified."""


@dataclass(frozen=True)
class Asset:
    name: str
    path: str  # relative path inside the mirror and the cache
    sha256: str | None = None  # None for directory assets (see ``manifest``)
    urls: tuple[str, ...] = ()
    size: int | None = None
    licence: str = ""
    description: str = ""
    manifest: dict[str, str] = field(default_factory=dict)  # file -> sha256
    project: bool = False  # made by this project and shipped in its data/ folder

    @property
    def is_directory(self) -> bool:
        return bool(self.manifest)


def registry_dir() -> Path:
    for folder in _REGISTRY_DIRS:
        if (folder / "registry.json").is_file():
            return folder
    raise AssetError(
        "The asset registry registry.json was not found in "
        + " or ".join(str(d) for d in _REGISTRY_DIRS)
        + ". Reinstall chollet_viz or run from a checkout of the repository."
    )


@functools.cache
def registry() -> dict[str, Asset]:
    folder = registry_dir()
    raw = json.loads((folder / "registry.json").read_text())["assets"]
    assets = {}
    for name, entry in raw.items():
        manifest = {}
        if "manifest" in entry:
            for line in (folder / entry["manifest"]).read_text().splitlines():
                digest, rel = line.split(maxsplit=1)
                manifest[rel] = digest
        assets[name] = Asset(
            name=name,
            path=entry["path"],
            sha256=entry.get("sha256"),
            urls=tuple(entry.get("urls", ())),
            size=entry.get("size"),
            licence=entry.get("licence", ""),
            description=entry.get("description", ""),
            manifest=manifest,
            project=entry.get("project", False),
        )
    return assets


def get_asset(name: str) -> Asset:
    assets = registry()
    if name not in assets:
        raise AssetError(f"Unknown asset {name!r}. Registered assets: {', '.join(sorted(assets))}.")
    return assets[name]


def mirror_dir() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "chollet_viz")).expanduser()


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check(path: Path, expected: str, name: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise AssetError(
            f"Asset {name!r}: {path} has sha256 {actual}, expected {expected}. "
            "The file is corrupt or a different version; delete it and fetch it again "
            "(a mirror file must be replaced by a correct copy)."
        )


def download(url: str, dest: Path, sha256: str, *, name: str = "", timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` atomically: nothing lands at ``dest`` unless the hash matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        _check(tmp, sha256, name or dest.name)
        os.replace(tmp, dest)
    except BaseException:  # also KeyboardInterrupt: never leave a half-written file
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _how_to_get(asset: Asset) -> str:
    # Folder assets register one URL template per source, with {file} for each manifest entry.
    urls = [u.replace("{file}", "<file>") for u in asset.urls]
    online = (
        "download it from " + " or ".join(urls)
        if asset.urls
        else "it has no public download URL; get the course's offline mirror"
    )
    return (
        f"Set {MIRROR_ENV} to a folder that holds {asset.path} (the course's offline mirror), "
        f"or connect to the internet, or {online}."
    )


def _resolve_file(asset: Asset, rel: str, sha256: str, urls: tuple[str, ...]) -> Path:
    looked = []
    if asset.project:
        shipped = _PACKAGE_DIR.parent / "data" / rel
        looked.append(str(shipped))
        if shipped.is_file():
            _check(shipped, sha256, asset.name)
            return shipped
    mirror = mirror_dir()
    if mirror is not None:
        candidate = mirror / rel
        looked.append(str(candidate))
        if candidate.is_file():
            _check(candidate, sha256, asset.name)
            return candidate
    cached = cache_dir() / rel
    looked.append(str(cached))
    if cached.is_file():
        _check(cached, sha256, asset.name)
        return cached
    errors = []
    for url in urls:
        try:
            return download(url, cached, sha256, name=asset.name)
        except (OSError, AssetError) as exc:  # URLError is an OSError
            errors.append(f"{url}: {exc}")
    if mirror is None:
        looked.insert(0, f"no mirror (the environment variable {MIRROR_ENV} is not set)")
    tried = "; ".join(errors) if errors else "no download URL is registered"
    raise AssetError(
        f"Asset {asset.name!r} ({rel}) is not available. Looked in: {', '.join(looked)}. "
        f"Download: {tried}. {_how_to_get(asset)}"
    )


def fetch(name: str) -> Path:
    """Return a verified local path for the registered asset ``name``.

    For a directory asset (the Dogs-vs-Cats split) every file in its manifest is
    resolved and verified and the folder holding them is returned.
    """
    asset = get_asset(name)
    if not asset.is_directory:
        return _resolve_file(asset, asset.path, asset.sha256, asset.urls)
    mirror = mirror_dir()
    if mirror is not None and (mirror / asset.path).is_dir():
        root = mirror
    else:
        root = cache_dir()
    for rel, digest in asset.manifest.items():
        urls = tuple(u.format(file=rel) for u in asset.urls)
        path = _resolve_file(asset, rel, digest, urls)
        if not path.is_relative_to(root):
            raise AssetError(
                f"Asset {name!r} is only partly in {root}: {rel} came from {path}. "
                "Complete the mirror or the cache folder."
            )
    return root / asset.path


PROJECT_RAW_URL = "https://github.com/chollet-viz/chollet_viz/raw/main/data/"


def register_project_file(name: str, path: str | os.PathLike, description: str, licence: str = "Apache-2.0") -> Asset:
    """Record a file this project made (in ``data/``) in the registry with its sha256.

    Online installs without a checkout download it from the repository.
    """
    path = Path(path).resolve()
    data_dir = _PACKAGE_DIR.parent / "data"
    if not path.is_relative_to(data_dir):
        raise AssetError(f"Project files must live in {data_dir}; got {path}.")
    rel = path.relative_to(data_dir).as_posix()
    registry_file = data_dir / "registry.json"
    document = json.loads(registry_file.read_text())
    document["assets"][name] = {
        "path": rel,
        "project": True,
        "urls": [PROJECT_RAW_URL + rel],
        "licence": licence,
        "description": description,
        "sha256": sha256_of(path),
        "size": path.stat().st_size,
    }
    document["assets"] = dict(sorted(document["assets"].items()))
    registry_file.write_text(json.dumps(document, indent=2) + "\n")
    registry.cache_clear()
    return get_asset(name)
