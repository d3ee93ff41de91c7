"""Validate manifests before anything is applied: every problem names the object, the field and a fix.

Known kinds are checked against the strict JSON schemas bundled with `kubernetes-validate`
(Kubernetes 1.36, or the newest bundled version up to 1.37): unknown fields, wrong types and
missing required fields are refused. On top of the schemas, checks the API server makes but the
schemas do not: object names (DNS-1123 / DNS-1035, length), label keys and values, resource
quantities. Kinds without a bundled schema (e.g. Argo `Workflow`) get a minimal structural check.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from scanflow_jupyter.kubernetes.manifests import Manifest, describe
from scanflow_jupyter.quantities import is_quantity

PREFERRED_VERSION = "1.36"
MAX_VERSION = "1.37"

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

# kind -> name rule: "label" (DNS-1123 label, 63), "label1035" (starts with a letter), else subdomain (253)
NAME_RULES = {"Namespace": "label", "Service": "label1035", "Deployment": "label", "ServiceAccount": "subdomain"}
STRUCTURAL_KINDS = {"Workflow": "argoproj.io/", "WorkflowTemplate": "argoproj.io/", "CronWorkflow": "argoproj.io/"}


@dataclass
class Problem:
    """One invalid field of one manifest."""

    object: str  # "Kind/name (namespace ns)"
    field: str  # dotted path, e.g. spec.template.spec.containers[0].resources.limits.memory
    text: str
    fix: str

    def __str__(self) -> str:
        return f"{self.object}: {self.field or '(object)'}: {self.text} Fix: {self.fix}"

    def to_dict(self) -> dict[str, str]:
        return {"object": self.object, "field": self.field, "text": self.text, "fix": self.fix}


class ManifestInvalid(ValueError):
    """Some manifests are invalid; nothing was applied. `problems` lists every one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid manifests (nothing was applied):\n" + "\n".join(f"  {p}" for p in problems))


def field_path(parts: Any) -> str:
    """['spec', 'containers', 0, 'image'] -> 'spec.containers[0].image'."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- the bundled schemas -------------------------------------------------------------------------


def _import_jsonschema() -> Any:
    """jsonschema (its `rfc3987-syntax` grammar build is deferred by importing this package:
    `scanflow_jupyter._deferred_imports`)."""
    import jsonschema

    return jsonschema


@lru_cache(maxsize=1)
def schema_version() -> str:
    """The bundled schema version used: 1.36 if present, else the newest up to 1.37."""
    _import_jsonschema()
    from kubernetes_validate.utils import all_versions
    from packaging.version import Version

    versions = all_versions()
    for v in versions:
        if v.startswith(PREFERRED_VERSION + "."):
            return v
    usable = [v for v in versions if Version(v) < Version(MAX_VERSION + ".999")]
    if not usable:
        raise RuntimeError(f"kubernetes-validate bundles no schema up to {MAX_VERSION} (has {', '.join(versions)}).")
    return usable[-1]


def _schema_dir() -> Any:
    from importlib.resources import files

    return files("kubernetes_validate").joinpath("kubernetes-json-schema", f"v{schema_version()}-local-strict")


@lru_cache(maxsize=1)
def _registry() -> Any:
    from referencing import Registry, Resource

    defs = json.loads(_schema_dir().joinpath("_definitions.json").read_text(encoding="utf-8"))
    return Registry().with_resource(defs["$id"], Resource.from_contents(defs))


@lru_cache(maxsize=64)
def _validator(kind: str, api_version: str) -> Any:
    """A strict schema validator for kind/apiVersion, or None if no schema is bundled."""
    jsonschema = _import_jsonschema()
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir().joinpath(f"{kind.lower()}-{group}.json")
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    schema.setdefault("$id", "https://kubernetes.io/api/")
    return jsonschema.Draft202012Validator(schema, registry=_registry())


# -- checks --------------------------------------------------------------------------------------


def _schema_problems(m: Manifest, validator: Any) -> list[Problem]:
    out = []
    for err in sorted(validator.iter_errors(m), key=lambda e: list(map(str, e.absolute_path))):
        where = field_path(err.absolute_path)
        message = err.message
        if err.validator == "additionalProperties":
            fix = "remove the field (or check its spelling): Kubernetes does not know it here."
        elif err.validator == "required":
            fix = "add the missing field."
        elif err.validator in ("type", "enum"):
            fix = "use a value of the expected type."
        else:
            fix = "correct the value."
        if len(message) > 300:
            message = message[:300] + "…"
        out.append(Problem(describe(m), where, message, fix))
    return out


def _name_problems(m: Manifest) -> list[Problem]:
    kind = m.get("kind", "")
    meta = m.get("metadata") or {}
    name = meta.get("name")
    obj = describe(m)
    if (not isinstance(name, str) or not name) and isinstance(meta.get("generateName"), str) \
            and meta["generateName"]:
        name = meta["generateName"] + "x" * 5  # the server appends 5 characters
    if not isinstance(name, str) or not name:
        return [Problem(obj, "metadata.name", "the object has no name.", "give it a name (or a generateName).")]
    rule = NAME_RULES.get(kind, "subdomain")
    limit = 253 if rule == "subdomain" else 63
    out = []
    if len(name) > limit:
        out.append(Problem(obj, "metadata.name", f"'{name}' has {len(name)} characters; a {kind} name may have at "
                           f"most {limit}.", _shorten_fix(m)))
    pattern = {"label": DNS1123_LABEL, "label1035": DNS1035_LABEL}.get(rule, DNS1123_SUBDOMAIN)
    if not pattern.match(name):
        first = " starting with a letter" if rule == "label1035" else ""
        out.append(Problem(obj, "metadata.name", f"'{name}' is not a valid {kind} name: use lower-case letters, "
                           f"digits and '-'{first}, beginning and ending with a letter or digit.",
                           "rename the notebook part it comes from."))
    ns = (m.get("metadata") or {}).get("namespace")
    if ns is not None and (len(ns) > 63 or not DNS1123_LABEL.match(ns)):
        out.append(Problem(obj, "metadata.namespace", f"'{ns}' is not a valid namespace name "
                           "(DNS-1123 label, at most 63 characters).", _shorten_fix(m)))
    return out


def _shorten_fix(m: Manifest) -> str:
    if m.get("kind") == "Namespace" or (m.get("metadata") or {}).get("namespace"):
        return ("the namespace is scanflow-<app>-<team>: shorten the %scanflow_app name or the team "
                "(--team), or choose a namespace with --namespace.")
    return "shorten the name of the notebook part it comes from."


def _label_problems(m: Manifest, where: str, labels: Any) -> list[Problem]:
    out = []
    if not isinstance(labels, dict):
        return out
    for key, value in labels.items():
        name = str(key).rsplit("/", 1)[-1]
        if len(name) > 63 or not LABEL_NAME.match(name):
            out.append(Problem(describe(m), f"{where}.{key}", f"label key '{key}' is not valid.",
                               "use at most 63 letters, digits, '-', '_' or '.'."))
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            out.append(Problem(describe(m), f"{where}.{key}", f"label value {value!r} is not valid (at most 63 "
                               "characters: letters, digits, '-', '_', '.', starting and ending alphanumeric).",
                               "shorten the %scanflow_app name or the team (labels carry them)."))
    return out


def _quantity_problems(m: Manifest, where: list[Any], resources: Any) -> list[Problem]:
    out = []
    if not isinstance(resources, dict):
        return out
    for section in ("requests", "limits"):
        for key, value in (resources.get(section) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                continue
            if not is_quantity(value):
                unit = "memory: e.g. 512Mi or 2Gi" if key in ("memory", "storage") else "cpu: e.g. 500m or 2"
                out.append(Problem(describe(m), field_path([*where, section, key]),
                                   f"{value!r} is not a Kubernetes quantity.", f"use Kubernetes units ({unit})."))
    return out


def _walk_containers(m: Manifest) -> list[tuple[list[Any], dict[str, Any]]]:
    spec = m.get("spec") or {}
    pod, base = None, []
    if m.get("kind") == "Pod":
        pod, base = spec, ["spec"]
    elif isinstance(spec.get("template"), dict):
        pod, base = (spec["template"].get("spec") or {}), ["spec", "template", "spec"]
    if not isinstance(pod, dict):
        return []
    out = []
    for key in ("initContainers", "containers"):
        for i, c in enumerate(pod.get(key) or []):
            if isinstance(c, dict):
                out.append(([*base, key, i], c))
    return out


def _structural_problems(m: Manifest) -> list[Problem]:
    """Minimal checks for kinds without a bundled schema (Argo Workflow & co.)."""
    obj = describe(m)
    kind = m.get("kind")
    out = []
    prefix = STRUCTURAL_KINDS.get(str(kind))
    if prefix is None:
        return [Problem(obj, "kind", f"unknown kind {kind!r} (apiVersion {m.get('apiVersion')!r}): no schema to "
                        "check it against.", "use a Kubernetes kind or an Argo Workflow kind.")]
    if not str(m.get("apiVersion", "")).startswith(prefix):
        out.append(Problem(obj, "apiVersion", f"{kind} needs apiVersion {prefix}v1alpha1, not "
                           f"{m.get('apiVersion')!r}.", f"set apiVersion: {prefix}v1alpha1."))
    unknown = sorted(set(m) - {"apiVersion", "kind", "metadata", "spec"})
    for key in unknown:
        out.append(Problem(obj, key, f"unknown top-level field '{key}'.", "remove it."))
    spec = m.get("spec")
    if not isinstance(spec, dict):
        return out + [Problem(obj, "spec", "spec must be an object.", "add a spec.")]
    body = spec.get("workflowSpec", spec) if kind == "CronWorkflow" else spec
    templates = body.get("templates") if isinstance(body, dict) else None
    where = "spec.workflowSpec" if kind == "CronWorkflow" else "spec"
    if not isinstance(templates, list) or not templates:
        out.append(Problem(obj, f"{where}.templates", "a workflow needs a non-empty list of templates.",
                           "add templates."))
        return out
    names = [t.get("name") for t in templates if isinstance(t, dict)]
    for i, t in enumerate(templates):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t.get("name"):
            out.append(Problem(obj, f"{where}.templates[{i}].name", "every template needs a name.", "name it."))
        elif isinstance(t.get("container"), dict):
            out += _quantity_problems(m, [*where.split("."), "templates", i, "container", "resources"],
                                      t["container"].get("resources"))
    entry = body.get("entrypoint")
    if entry is not None and entry not in names:
        out.append(Problem(obj, f"{where}.entrypoint", f"entrypoint {entry!r} names no template.",
                           f"use one of {', '.join(map(str, names))}."))
    return out


def validate_manifest(m: Manifest) -> list[Problem]:
    """Every problem of one manifest (empty list: valid)."""
    if not isinstance(m, dict) or not m.get("kind") or not m.get("apiVersion"):
        return [Problem(describe(m) if isinstance(m, dict) else "?", "kind", "a manifest needs apiVersion and kind.",
                        "add them.")]
    out = _name_problems(m)
    meta = m.get("metadata") or {}
    out += _label_problems(m, "metadata.labels", meta.get("labels"))
    validator = _validator(m["kind"], m["apiVersion"])
    if validator is None:
        return out + _structural_problems(m)
    out += _schema_problems(m, validator)
    template = (m.get("spec") or {}).get("template") if isinstance(m.get("spec"), dict) else None
    if isinstance(template, dict):
        out += _label_problems(m, "spec.template.metadata.labels", (template.get("metadata") or {}).get("labels"))
    for where, container in _walk_containers(m):
        out += _quantity_problems(m, [*where, "resources"], container.get("resources"))
    if m["kind"] == "PersistentVolumeClaim":
        out += _quantity_problems(m, ["spec", "resources"], (m.get("spec") or {}).get("resources"))
    return out


def validate_all(manifests: list[Manifest]) -> list[Problem]:
    """Every problem of every manifest, plus duplicate objects."""
    problems: list[Problem] = []
    seen: set[tuple[str, str, str]] = set()
    for m in manifests:
        problems += validate_manifest(m)
        if isinstance(m, dict):
            meta = m.get("metadata") or {}
            key = (str(m.get("kind")), str(meta.get("namespace")), str(meta.get("name")))
            if key in seen:
                problems.append(Problem(describe(m), "metadata.name", "the same object appears twice.",
                                        "rename one of the notebook parts it comes from."))
            seen.add(key)
    return problems


def check_all(manifests: list[Manifest]) -> None:
    """Raise ManifestInvalid listing every problem, if there is any."""
    problems = validate_all(manifests)
    if problems:
        raise ManifestInvalid(problems)
