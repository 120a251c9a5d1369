"""Every kustomize target renders, and every rendered object validates: core kinds with
kubernetes-validate --strict (schemas bundled, offline), custom resources against their CRDs."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from tests.k8s.crd_schema import CRD_FILES, errors
from tests.k8s.manifests import NAMESPACE, TARGETS, render, target_id

# The kubectl on this machine and CI is 1.32; kubernetes-validate 1.37.0 bundles 1.25 to 1.37.
KUBERNETES_VERSION = "1.32.0"
BUILT_IN = {"apps", "batch", "policy", "networking.k8s.io", "autoscaling"}


@pytest.mark.parametrize("target", sorted(TARGETS), ids=target_id)
def test_renders_into_the_namespace(target: str) -> None:
    objs = render(target)
    assert objs, f"{target} renders nothing"
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"
    # No Secret is committed: ops create motionnft-tokens (docs/operations.md).
    assert not [o for o in objs if o["kind"] == "Secret"]


@pytest.mark.parametrize("target", sorted(TARGETS), ids=target_id)
def test_core_kinds_validate_strictly(target: str) -> None:
    problems = []
    for obj in render(target):
        if obj["kind"] in CRD_FILES:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("target", sorted(TARGETS), ids=target_id)
def test_custom_resources_validate_against_their_crds(target: str) -> None:
    objs = render(target)
    # A kind outside the built-in API groups is a custom resource: it must have its CRD here.
    custom = {o["kind"] for o in objs if "/" in o["apiVersion"] and o["apiVersion"].split("/")[0] not in BUILT_IN}
    assert custom <= set(CRD_FILES), f"no CRD schema in k8s/schemas for {custom - set(CRD_FILES)}"
    problems = [f"{o['kind']}/{o['metadata']['name']}: {e}" for o in objs if o["kind"] in CRD_FILES for e in errors(o)]
    assert not problems, "\n".join(problems)


def test_every_crd_kind_is_used_somewhere() -> None:
    used = {o["kind"] for target in TARGETS for o in render(target)}
    assert set(CRD_FILES) <= used


def test_the_crd_check_refuses_an_unknown_field() -> None:
    """The strictness is real: a typo that a cluster would prune silently fails here."""
    job = copy.deepcopy(next(o for o in render("base") if o["kind"] == "RayJob"))
    job["spec"]["shutdownAfterJobFinshes"] = True
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replica"] = 2
    found = errors(job)
    assert any("shutdownAfterJobFinshes" in e for e in found), found
    assert any("replica" in e and "workerGroupSpecs/0" in e for e in found), found
    rule = copy.deepcopy(next(o for o in render("base") if o["kind"] == "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["fro"] = "5m"
    assert errors(rule)


def test_the_crd_check_knows_int_or_string() -> None:
    monitor = copy.deepcopy(next(o for o in render("base") if o["kind"] == "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["targetPort"] = 8001
    assert not errors(monitor)
    monitor["spec"]["endpoints"][0]["targetPort"] = 8001.5
    assert errors(monitor)
