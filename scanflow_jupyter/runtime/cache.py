"""Cache keys of steps (DESIGN §3) and why a step ran or was served from the cache.

A step's key hashes its *ingredients* (`StepKeys.ingredients`):

* ``setup`` / ``code`` — the normalized code of the `%%setup` cells and of the body
  (comments, blank lines and formatting ignored; magics kept — read, like every other
  analysis, through `notebook.ipython_source`);
* ``params`` — only the parameters the step's code (setup, body, `%run` code) reads;
* ``inputs`` — the content digests of its inputs;
* ``deps`` — every file matched by `--deps PATH ...` (files, folders, globs);
* ``modules`` — local modules it imports that resolve to files in the project folder,
  followed recursively; ``notebooks`` — notebooks/scripts it `%run`s, recursively;
* ``data_files`` — string literals in that code naming an existing file in the project;
* ``distributions`` — versions of the installed distributions the code imports (and what
  they depend on), from the mapping the image builder uses (`build.requirements`);
* ``environment`` — kernel, Python, image, `--requirements`, outputs, Scanflow version.

File contents are hashed with XXH3-128 and remembered by (path, size, mtime_ns, inode) in
`<run store>/cache/files.json`, so a no-op rerun stats files instead of reading them.
"""

from __future__ import annotations

import ast
import glob
import hashlib
import json
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from scanflow_jupyter import __version__
from scanflow_jupyter.model import Application, Executor
from scanflow_jupyter.notebook import ipython_source

#: Folders never looked into for modules, data files or `--deps` folders.
SKIP_DIRS = {".scanflow", ".git", "__pycache__", ".ipynb_checkpoints", ".venv", "venv", "node_modules"}
#: Calls that can read any global: a step using them depends on every parameter.
DYNAMIC_READS = {"globals", "locals", "vars", "eval", "exec", "get_ipython"}
_RUN_OPTS_WITH_VALUE = {"-p", "-G", "-d"}  # `%run` options that take a value
#: A file whose mtime is this close to when it was hashed is hashed again next time.
RACY_NS = 100_000_000


def normalize_code(source: str) -> str:
    """Code with comments, blank lines and formatting removed (a comment never busts the cache).

    Plain Python gives `ast.unparse(ast.parse(source))`. Each magic adds a line naming it: its
    text too unless it runs Python that the tree already holds (`%time STMT`, `%%capture`).
    """
    try:
        code = ipython_source.analyse(source)
    except SyntaxError:
        return "\n".join(line.rstrip() for line in source.split("\n") if line.strip())
    lines = [ast.unparse(code.tree)]
    for m in code.magics:
        runs_code = m.name in (ipython_source.CODE_CELL_MAGICS if m.kind == "cell" else ipython_source.CODE_LINE_MAGICS)
        lines.append(f"# {m.kind} {m.name}" if runs_code and m.kind in ("line", "cell") else f"# {m.kind} {m.name} {m.text!r} {m.body!r}")
    return "\n".join(lines)


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()


def environment_spec(app: Application, ex: Executor) -> dict[str, Any]:
    """What the step runs on: kernel, Python, image and requirements, Scanflow version."""
    return {
        "kernel": app.kernel_name,
        "python": platform.python_version(),
        "image": ex.image,
        "requirements": sorted(ex.requirements),
        "outputs": list(ex.outputs),
        "scanflow": __version__,
    }


# --------------------------------------------------------------------------- file digests


class FileDigests:
    """Content digests of files, remembered by (size, mtime_ns, inode) in a small JSON file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._known: dict[str, list[Any]] = {}
        self._dirty = False
        if path is not None:
            try:
                loaded = json.loads(path.read_bytes())
                self._known = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._known = {}

    def digest(self, file: Path) -> str:
        """XXH3-128 of the file's bytes ("missing" if it cannot be read)."""
        try:
            st = file.stat()
        except OSError:
            return "missing"
        key = str(file)
        known = self._known.get(key)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        if isinstance(known, list) and len(known) == 5 and known[:3] == stamp and known[4] - known[1] > RACY_NS:
            return str(known[3])
        hashed_at = time.time_ns()
        try:
            digest = _hash_file(file)
        except OSError:
            return "missing"
        self._known[key] = [*stamp, digest, hashed_at]
        self._dirty = True
        return digest

    def save(self) -> None:
        """Write the remembered digests (atomically; concurrent runs: the last writer wins)."""
        if self.path is None or not self._dirty:
            return
        from scanflow_jupyter.data.files import atomic_write_bytes

        alive = {k: v for k, v in self._known.items() if os.path.exists(k)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, json.dumps(alive).encode())
        except OSError:
            return  # only a speed-up: the next run hashes again
        self._dirty = False


def _hash_file(file: Path) -> str:
    from scanflow_jupyter.data.hashing import new_hasher

    hasher = new_hasher()
    with open(file, "rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


# --------------------------------------------------------------------------- paths


def project_root(app: Application) -> Path:
    """The project folder: the notebook's folder (the steps' working folder)."""
    return Path(app.notebook).resolve().parent


def _skipped(path: Path, root: Path) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    return any(p in SKIP_DIRS for p in parts)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return not _skipped(path, root)


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def deps_match(root: Path, pattern: str) -> bool:
    """Does a `--deps` entry name at least one file? (validation: stops at the first file)"""
    base = Path(os.path.expanduser(pattern))
    base = base if base.is_absolute() else root / base
    matches = (Path(p) for p in glob.iglob(str(base), recursive=True)) if glob.has_magic(pattern) else iter([base])
    for match in matches:
        if match.is_file():
            return True
        if match.is_dir():
            for _dirpath, dirnames, filenames in os.walk(match):
                if filenames:
                    return True
                dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
    return False


def resolve_deps(root: Path, pattern: str) -> list[Path]:
    """The files a `--deps` entry names: a file, every file under a folder, or a glob's matches."""
    base = Path(os.path.expanduser(pattern))
    base = base if base.is_absolute() else root / base
    if glob.has_magic(pattern):
        matches = [Path(p) for p in glob.glob(str(base), recursive=True)]
    else:
        matches = [base] if base.exists() else []
    files: list[Path] = []
    for match in matches:
        if match.is_dir():
            for dirpath, dirnames, filenames in os.walk(match):
                dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
                files += [Path(dirpath, f) for f in filenames]
        elif match.is_file():
            files.append(match)
    return sorted(set(files))


# --------------------------------------------------------------------------- code analysis


class _CodeFacts:
    """What one piece of code reads: names, imports, `%run` targets, string literals."""

    def __init__(self, source: str, *, is_module: bool = False) -> None:
        self.names: set[str] = set()
        self.dynamic = False
        self.imports: list[tuple[str, int, list[str]]] = []  # (module, level, imported names)
        self.literals: set[str] = set()
        self.runs: list[str] = []  # %run arguments (path or -m module)
        self.magic_text = ""
        try:
            code = ipython_source.analyse(source)
        except (SyntaxError, ValueError, RecursionError):
            self.dynamic = True  # cannot tell what it reads: depend on everything
            return
        tree = code.tree
        self.magic_text = code.magic_text()  # names a magic or `!cmd {x}` may interpolate
        if not is_module:
            self.runs = code.runs()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self.names.add(node.id)
                if node.id in DYNAMIC_READS:
                    self.dynamic = True
            elif isinstance(node, ast.Import):
                self.imports += [(alias.name, 0, []) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                self.imports.append((node.module or "", node.level, [a.name for a in node.names]))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if 0 < len(text) < 1024 and "\n" not in text and "\0" not in text:
                    self.literals.add(text)


def _notebook_cells(path: Path) -> list[str]:
    """The code cells of a notebook (each read on its own: a cell magic starts its cell)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb.get("cells", []) if isinstance(nb, dict) else []
    except (OSError, ValueError):
        return []
    from scanflow_jupyter.notebook.parser import cell_source

    return [cell_source(c) for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]


class _Follower:
    """Follows a step's code into local modules, `%run` notebooks and data files."""

    def __init__(self, root: Path, files: FileDigests) -> None:
        self.root = root
        self.files = files
        self.modules: dict[str, str] = {}
        self.notebooks: dict[str, str] = {}
        self.data_files: dict[str, str] = {}
        self.names: set[str] = set()
        self.magic_text: list[str] = []
        self.dynamic = False
        self.third_party: list[str] = []
        self._seen: set[Path] = set()

    def code(self, source: str, where: Path | None = None, package: str | None = None, is_module: bool = False) -> None:
        facts = _CodeFacts(source, is_module=is_module)
        if not is_module:  # a module's own names are not the notebook's parameters
            self.names |= facts.names
            self.magic_text.append(facts.magic_text)
            self.dynamic = self.dynamic or facts.dynamic
        folder = where.parent if where else self.root
        for text in facts.literals:
            self._data_file(text, folder)
        for module, level, names in facts.imports:
            self._import(module, level, names, package)
        for arg in facts.runs:
            self._run(arg, folder)

    def _data_file(self, text: str, folder: Path) -> None:
        if text.startswith(("http:", "https:", "s3:", "gs:")):
            return
        for base in {folder, self.root}:
            try:
                path = (base / os.path.expanduser(text)).resolve()
                if not path.is_file() or not _inside(path, self.root):
                    continue
            except (OSError, ValueError):
                continue
            if path.suffix in (".py", ".ipynb") and path in self._seen:
                continue
            self.data_files[_shown(path, self.root)] = self.files.digest(path)

    def _import(self, module: str, level: int, names: list[str], package: str | None) -> None:
        if level:
            if not package:
                return
            parts = package.split(".")
            if level > 1:
                parts = parts[: len(parts) - level + 1]
            module = ".".join(p for p in [*parts, module] if p)
        if not module:
            return
        candidates = [module] + [f"{module}.{n}" for n in names if n != "*"]
        local = False
        for candidate in candidates:
            local = self._module(candidate) or local
        if not local and not level:
            self.third_party.append(module)

    def _module(self, dotted: str) -> bool:
        """Follow a module if it resolves to files in the project; True if it did."""
        parts = dotted.split(".")
        found = False
        for depth in range(1, len(parts) + 1):
            path = self.root.joinpath(*parts[:depth])
            for file, package in ((path / "__init__.py", ".".join(parts[:depth])),
                                  (path.with_suffix(".py"), ".".join(parts[: depth - 1]))):
                if file.is_file() and _inside(file.resolve(), self.root):
                    found = True
                    self._follow_module(file.resolve(), package)
            if not found:
                return False
        return found

    def _follow_module(self, file: Path, package: str) -> None:
        if file in self._seen:
            return
        self._seen.add(file)
        self.modules[_shown(file, self.root)] = self.files.digest(file)
        try:
            source = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return
        self.code(source, where=file, package=package or None, is_module=True)

    def _run(self, arg: str, folder: Path) -> None:
        try:
            words = shlex.split(arg, posix=True)
        except ValueError:
            return
        target = None
        skip = False
        for i, word in enumerate(words):
            if skip:
                skip = False
                continue
            if word == "-m" and i + 1 < len(words):
                self._import(words[i + 1], 0, [], None)
                return
            if word in _RUN_OPTS_WITH_VALUE:
                skip = True
                continue
            if word.startswith("-"):
                continue
            target = word
            break
        if not target:
            return
        path = (folder / os.path.expanduser(target)).resolve()
        if path in self._seen:
            return
        self._seen.add(path)
        self.notebooks[_shown(path, self.root)] = self.files.digest(path)
        if not path.is_file():
            return
        if path.suffix == ".ipynb":
            sources = _notebook_cells(path)
        else:
            try:
                sources = [path.read_text(encoding="utf-8")]
            except (OSError, UnicodeDecodeError):
                return
        for source in sources:
            self.code(source, where=path)  # %run code shares the kernel's names (parameters included)


def environment_signature() -> list[Any]:
    """What changes when a distribution is installed, upgraded or removed: the interpreter and
    the modification times of the folders on sys.path (pip/conda add and remove *.dist-info
    folders in them)."""
    sig: list[Any] = [sys.version, sys.prefix]
    for entry in sys.path:
        try:
            st = os.stat(entry or ".")
        except OSError:
            continue
        sig.append([entry, st.st_mtime_ns, st.st_ino])
    return sig


def _load_distributions(path: Path | None) -> dict[str, Any]:
    """Remembered module set -> versions for this environment (empty if it changed since)."""
    signature = environment_signature()
    try:
        doc = json.loads(path.read_bytes()) if path else None
    except (OSError, ValueError):
        doc = None
    if isinstance(doc, dict) and doc.get("signature") == signature and isinstance(doc.get("versions"), dict):
        return {"signature": signature, "versions": doc["versions"]}
    return {"signature": signature, "versions": {}}


def distribution_versions(modules: list[str]) -> dict[str, str]:
    """Installed distributions providing `modules`, and everything they depend on -> version.

    The module -> distribution mapping is the image builder's (`build.requirements`).
    """
    from packaging.utils import canonicalize_name

    from scanflow_jupyter.build.requirements import (
        dependency_closure,
        distributions_for,
        installed_version,
    )

    roots: dict[str, set[str]] = {}
    for module in dict.fromkeys(modules):
        top = module.split(".")[0]
        if not top or top in sys.stdlib_module_names or top == "__future__":
            continue
        for dist in distributions_for(module):
            roots[canonicalize_name(dist)] = set()
    if not roots:
        return {}
    return {name: installed_version(name) or "?" for name in sorted(dependency_closure(roots))}


# --------------------------------------------------------------------------- keys


class StepKeys:
    """The cache keys of one run's steps, their ingredients and why each ran or was cached."""

    def __init__(self, app: Application, params: dict[str, Any], store_root: Path | None = None,
                 fresh_environment: bool = True) -> None:
        from scanflow_jupyter.build.requirements import clear_caches

        if fresh_environment:
            clear_caches()  # packages may have been installed since the last run in this process
        self.app = app
        self.params = params
        self.root = project_root(app)
        self.cache_dir = Path(store_root) / "cache" if store_root is not None else None
        self.files = FileDigests(self.cache_dir / "files.json" if self.cache_dir else None)
        self._dists: dict[tuple[str, ...], dict[str, str]] = {}
        self._dist_file = self.cache_dir / "distributions.json" if self.cache_dir else None
        self._dist_known = _load_distributions(self._dist_file)

    def ingredients(self, ex: Executor, upstream: dict[str, str] | None = None) -> dict[str, Any]:
        """Everything the key of `ex` hashes (`upstream`: its inputs' digests; None: not known yet)."""
        follower = _Follower(self.root, self.files)
        for block in self.app.setup:
            follower.code(block.source)
        for part in ex.code_parts():  # each part on its own: a cell magic starts its part
            follower.code(part.source)
        if follower.dynamic:
            read = list(self.params)
        else:
            magic_words = set(re.findall(r"[A-Za-z_]\w*", "\n".join(follower.magic_text)))
            read = [p for p in self.params if p in follower.names or p in magic_words]
        deps: dict[str, str] = {}
        for pattern in ex.deps:
            matched = resolve_deps(self.root, pattern)
            for file in matched:
                deps[_shown(file, self.root)] = self.files.digest(file)
            if not matched:
                deps[pattern] = "missing"
        modules = tuple(sorted(set(follower.third_party)))
        if modules not in self._dists:
            remembered = self._dist_known["versions"].get("\n".join(modules))
            if remembered is None:
                remembered = self._dist_known["versions"]["\n".join(modules)] = distribution_versions(list(modules))
                self._dist_known["dirty"] = True
            self._dists[modules] = remembered
        return {
            "setup": _sha([normalize_code(b.source) for b in self.app.setup]),
            "code": _sha(normalize_code(ex.source)),
            "params": {name: self.params[name] for name in read},
            "inputs": dict(sorted((upstream or {}).items())) if upstream is not None else {v: None for v in ex.inputs},
            "deps": dict(sorted(deps.items())),
            "modules": dict(sorted(follower.modules.items())),
            "notebooks": dict(sorted(follower.notebooks.items())),
            "data_files": dict(sorted(follower.data_files.items())),
            "distributions": self._dists[modules],
            "environment": environment_spec(self.app, ex),
        }

    def key(self, ex: Executor, upstream: dict[str, str]) -> str:
        return key_of(self.ingredients(ex, upstream))

    # -- why
    def _record_path(self, step: str) -> Path | None:
        return self.cache_dir / "steps" / self.app.name / f"{step}.json" if self.cache_dir else None

    def remember(self, step: str, key: str, ingredients: dict[str, Any], run_id: str) -> None:
        """Keep the ingredients of the latest cache entry of `step` (what --explain compares with)."""
        from scanflow_jupyter.data.files import atomic_write_bytes

        path = self._record_path(step)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            doc = {"key": key, "run_id": run_id, "ingredients": ingredients}
            atomic_write_bytes(path, json.dumps(doc, default=repr).encode())
        except OSError:
            pass

    def previous(self, step: str) -> dict[str, Any] | None:
        path = self._record_path(step)
        try:
            doc = json.loads(path.read_bytes()) if path else None
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("ingredients"), dict) else None

    def why_not_cached(self, step: str, ingredients: dict[str, Any]) -> str:
        """Why `step`'s key has no cache entry: what changed since its latest entry."""
        prev = self.previous(step)
        if prev is None:
            return "no cache entry"
        changes = explain_changes(json.loads(json.dumps(prev["ingredients"], default=repr)),
                                  json.loads(json.dumps(ingredients, default=repr)))
        if not changes:
            return f"no cache entry (the outputs of run {prev.get('run_id')} are gone)"
        return "; ".join(changes)

    def save(self) -> None:
        self.files.save()
        if self._dist_file is not None and self._dist_known.pop("dirty", False):
            from scanflow_jupyter.data.files import atomic_write_bytes

            try:
                self._dist_file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(self._dist_file, json.dumps(self._dist_known).encode())
            except OSError:
                pass  # only a speed-up


def key_of(ingredients: dict[str, Any]) -> str:
    """The cache key: a hash of the ingredients."""
    return _sha(ingredients)


def step_cache_key(app: Application, ex: Executor, params: dict[str, Any], upstream: dict[str, str]) -> str:
    """The cache key of `ex` given the run's parameters and its inputs' content digests."""
    return StepKeys(app, params).key(ex, upstream)


_ENV_WORDS = {"kernel": "kernel", "python": "Python version", "image": "--image", "requirements": "--requirements",
              "outputs": "--outputs", "scanflow": "Scanflow version"}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, "added" | "removed" | "changed") for every key whose value differs, sorted by name."""
    out = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            out.append((name, "added"))
        elif name not in new:
            out.append((name, "removed"))
        elif old[name] != new[name]:
            out.append((name, "changed"))
    return out


def _files_changed(kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    words = {"added": "added", "removed": "no longer used", "changed": "changed"}
    return [f"{kind}{path} is missing" if how == "changed" and new[path] == "missing" else f"{kind}{path} {words[how]}"
            for path, how in _differences(old, new)]


def explain_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two sets of ingredients ("parameter lr changed", ...)."""
    out: list[str] = []
    if old.get("setup") != new.get("setup"):
        out.append("setup code changed")
    if old.get("code") != new.get("code"):
        out.append("code changed")
    param_words = {"added": "now reads parameter {}", "removed": "no longer reads parameter {}",
                   "changed": "parameter {} changed"}
    out += [param_words[how].format(name)
            for name, how in _differences(old.get("params") or {}, new.get("params") or {})]
    oi, ni = old.get("inputs") or {}, new.get("inputs") or {}
    out += [f"input {var} changed" for var in sorted(set(oi) | set(ni)) if oi.get(var) != ni.get(var)]
    for kind, prefix in (("deps", ""), ("modules", ""), ("notebooks", "%run "), ("data_files", "")):
        out += _files_changed(prefix, old.get(kind) or {}, new.get(kind) or {})
    od, nd = old.get("distributions") or {}, new.get("distributions") or {}
    for name in sorted(set(od) | set(nd)):
        if od.get(name) != nd.get(name):
            out.append(f"package {name} {od.get(name) or 'absent'} -> {nd.get(name) or 'absent'}")
    oe, ne = old.get("environment") or {}, new.get("environment") or {}
    out += [f"{word} changed" for field, word in _ENV_WORDS.items() if oe.get(field) != ne.get(field)]
    return out


def inspect_ingredients(app: Application, ex: Executor, keys: StepKeys | None = None) -> dict[str, Any]:
    """The key ingredients of `ex` as `scanflow inspect --json` shows them (no run store).
    `keys`: one `StepKeys(app, app.parameters, fresh_environment=False)` shared by all steps."""
    keys = keys or StepKeys(app, app.parameters, fresh_environment=False)
    ing = keys.ingredients(ex)
    env = ing["environment"]
    return {
        "enabled": ex.cache, "code_digest": ing["code"], "setup_digest": ing["setup"], "params_read": sorted(ing["params"]),
        "inputs": list(ex.inputs), "deps": ing["deps"], "local_modules": ing["modules"],
        "run_notebooks": ing["notebooks"], "data_files": ing["data_files"],
        "distributions": ing["distributions"], "kernel": env["kernel"], "python": env["python"],
    }
