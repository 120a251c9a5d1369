"""Validate custom resources against the openAPIV3Schema of their CRD, strictly (offline).

On a cluster the API server prunes unknown fields of a structural schema without an error, so a
misspelt `shutdownAfterJobFinshes` would vanish silently. Here every object that lists its
`properties` and does not set `x-kubernetes-preserve-unknown-fields` refuses other keys.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import jsonschema
import yaml

from tests.k8s.manifests import SCHEMAS

# kind -> the CRD file of k8s/schemas/crds that defines it.
CRD_FILES = {
    "RayJob": "ray.io_rayjobs.yaml",
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}


def strict(schema: Any) -> Any:
    """A JSON-schema copy of an OpenAPI v3 CRD schema that refuses unknown fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    pattern = out.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("^(?i)"):
        out["pattern"] = "(?i)^" + pattern[5:]  # Go allows the flag after ^; Python wants it first
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserves = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and not preserves and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd(kind: str) -> dict[str, Any]:
    # The RayJob CRD is 1.4 MB: libyaml's loader reads it in a fraction of the pure-Python time.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((SCHEMAS / CRD_FILES[kind]).read_text(), Loader=loader)
    assert crd["spec"]["names"]["kind"] == kind
    return crd


@functools.cache
def validator(kind: str, api_version: str) -> jsonschema.Draft7Validator:
    """The strict validator of `kind` at `api_version` (group/version), from its CRD."""
    crd = _crd(kind)
    group, _, version = api_version.partition("/")
    assert group == crd["spec"]["group"], f"{kind}: group {group!r}, CRD has {crd['spec']['group']!r}"
    versions = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert version in versions, f"{kind}: version {version!r} is not served by the CRD ({sorted(versions)})"
    schema = strict(copy.deepcopy(versions[version]["schema"]["openAPIV3Schema"]))
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "spec"})
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(obj: dict[str, Any]) -> list[str]:
    """Every schema violation of one custom resource, as 'path: message'."""
    found = validator(obj["kind"], obj["apiVersion"]).iter_errors(obj)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]
