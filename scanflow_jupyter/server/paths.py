"""Notebook paths from the REST API: relative to the server root, never outside it."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class PathRefused(Exception):
    """The path points outside the server root (→ 403)."""


class PathMissing(Exception):
    """The path is inside the root but no such notebook exists (→ 404)."""


class PathInvalid(Exception):
    """The path is too long or cannot be resolved (→ 400)."""


MAX_PATH = 4096  # characters of a path (Linux PATH_MAX)
MAX_COMPONENT = 255  # characters of one path component (NAME_MAX)


def check_length(path: str, what: str = "the path") -> None:
    """PathInvalid if `path` or one of its components is longer than the file system allows."""
    if len(path) > MAX_PATH:
        raise PathInvalid(f"{what} is {len(path)} characters long (limit {MAX_PATH})")
    longest = max(path.replace("\\", "/").split("/"), key=len)
    if len(longest) > MAX_COMPONENT:
        raise PathInvalid(f"{what} has a component of {len(longest)} characters (limit {MAX_COMPONENT}): "
                          f"{longest[:40]!r}…")


def resolve_in_root(root: str | Path, path: str, *, must_exist: bool = True) -> Path:
    """The absolute, symlink-free path of `path` (contents-API style, relative to `root`).

    Refuses (PathRefused) absolute paths, `..` components, NUL bytes, and anything that
    resolves outside `root` after following symlinks; PathInvalid for over-long or unresolvable paths.
    """
    if not isinstance(path, str) or not path.strip():
        raise PathMissing("no notebook path given: pass `path`, relative to the server root "
                          "(e.g. notebooks/diamond.ipynb)")
    if "\0" in path:
        raise PathRefused(f"the path {path!r} contains a NUL byte")
    check_length(path, f"the path {path[:60]!r}")
    posix = PurePosixPath(path.replace("\\", "/"))
    if posix.is_absolute() or os.path.isabs(path):
        raise PathRefused(f"the path {path!r} is absolute; give a path relative to the server root")
    if ".." in posix.parts:
        raise PathRefused(f"the path {path!r} leaves the server root ('..' is not allowed)")
    base = Path(root).resolve()
    try:
        resolved = (base / Path(*posix.parts)).resolve()
        is_file = resolved.is_file()
    except (OSError, RuntimeError) as exc:  # symlink loop, a link target too long, ...
        raise PathInvalid(f"the path {path!r} cannot be resolved: {getattr(exc, 'strerror', None) or exc}") from None
    if resolved != base and base not in resolved.parents:
        raise PathRefused(f"the path {path!r} resolves outside the server root (symlink?)")
    if must_exist and not is_file:
        raise PathMissing(f"no notebook {path!r} under the server root")
    return resolved


def inside_root(root: str | Path, path: str | Path) -> bool:
    """True if `path` (absolute) resolves inside `root`."""
    base = Path(root).resolve()
    resolved = Path(path).resolve()
    return resolved == base or base in resolved.parents


def relative_to_root(root: str | Path, path: str | Path) -> str | None:
    """`path` relative to `root` (POSIX separators), or None when it lies outside the root."""
    base = Path(root).resolve()
    resolved = Path(path).resolve()
    if resolved != base and base not in resolved.parents:
        return None
    return resolved.relative_to(base).as_posix()
