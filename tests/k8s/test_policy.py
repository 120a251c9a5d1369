"""Policies on every rendered pod and on the objects around the services: non-root, read-only root
with /tmp writable, capabilities dropped, seccomp, limits and probes; network policies; disruption
budgets; monitoring and autoscaling that name what exists."""

from __future__ import annotations

import pytest

from tests.k8s.manifests import (
    NAMESPACE,
    SERVICES,
    TARGETS,
    TRAINER_LABEL,
    Obj,
    containers,
    find,
    one,
    pod_specs,
    render,
    target_id,
)

ALL = pytest.mark.parametrize("target", sorted(TARGETS), ids=target_id)
UID = 10001  # the images' user (docker/*.Dockerfile)


@ALL
def test_every_container_is_locked_down_and_bounded(target: str) -> None:
    problems = []
    for where, _, spec in pod_specs(render(target)):
        pod = spec.get("securityContext", {})
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token it does not need")
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(spec):
            name = f"{where} {container['name']}"
            security = {**pod, **container.get("securityContext", {})}
            if security.get("runAsNonRoot") is not True or security.get("runAsUser") != UID:
                problems.append(f"{name}: not runAsNonRoot with uid {UID}")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name}: root filesystem writable")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: privilege escalation allowed")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{name}: capabilities not all dropped")
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if mounts.get("/tmp") not in tmp_volumes:
                problems.append(f"{name}: no emptyDir at /tmp (the only writable scratch)")
            limits = container.get("resources", {}).get("limits", {})
            if not {"cpu", "memory"} <= set(limits):
                problems.append(f"{name}: no cpu and memory limits")
            filler = container["name"].startswith("pretrain")  # dev's init container fills /models
            for mount in container.get("volumeMounts", []):
                if mount["mountPath"] == "/models" and not mount.get("readOnly") and not filler:
                    problems.append(f"{name}: /models mounted writable")
    assert not problems, "\n".join(problems)


@ALL
def test_long_running_containers_have_probes(target: str) -> None:
    """Deployments: startup, readiness and liveness. Ray nodes: readiness and liveness (HTTP)."""
    problems = []
    for where, _, spec in pod_specs(render(target)):
        if where.endswith("submitter"):
            continue  # a Job's pod that runs `ray job submit` and exits
        needed: tuple[str, ...] = ("startupProbe", "readinessProbe", "livenessProbe")
        needed = needed if where.startswith("Deployment/") else needed[1:]
        for container in spec["containers"]:
            problems += [f"{where} {container['name']}: no {p}" for p in needed if p not in container]
    assert not problems, "\n".join(problems)


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_labels(objs: list[Obj], deployment: str) -> dict[str, str]:
    return dict(one(objs, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"])


@ALL
@pytest.mark.parametrize("deployment", sorted(SERVICES))
def test_only_the_trainer_and_monitoring_reach_a_service(target: str, deployment: str) -> None:
    objs = render(target)
    labels = _pod_labels(objs, deployment)
    policies = [p for p in find(objs, "NetworkPolicy") if _selects(p["spec"]["podSelector"]["matchLabels"], labels)]
    assert len(policies) == 1, f"{deployment}: {len(policies)} NetworkPolicies select it"
    (policy,) = policies
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    (rule,) = policy["spec"]["ingress"]
    sources = sorted(str(s) for s in rule["from"])
    assert sources == sorted(
        [
            str({"podSelector": {"matchLabels": dict([TRAINER_LABEL])}}),
            str({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}),
        ]
    )
    # Every pod of the training job carries the label that policy admits.
    for where, meta, _ in pod_specs(find(objs, "RayJob")):
        if not where.endswith("submitter"):
            assert _selects(dict([TRAINER_LABEL]), meta.get("labels", {})), where


@ALL
def test_egress_is_only_what_each_service_needs(target: str) -> None:
    objs = render(target)
    policies = {p["metadata"]["name"]: p["spec"] for p in find(objs, "NetworkPolicy")}
    assert not policies["reward-api"].get("egress")
    judge_egress = policies["mllm-judge"].get("egress") or []
    if find(objs, "Deployment", "vllm"):
        targets = [peer for rule in judge_egress for peer in rule["to"]]
        assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "vllm"}}} in targets
        dns = [r for r in judge_egress if any("namespaceSelector" in p for p in r["to"])]
        assert [p["port"] for r in dns for p in r["ports"]] == [53, 53]
        assert len(judge_egress) == 2, "the judge reaches its model server and DNS, nothing else"
        assert not policies["vllm"].get("egress")
    else:
        assert not judge_egress and "vllm" not in policies


@ALL
@pytest.mark.parametrize("deployment", sorted(SERVICES))
def test_each_service_has_a_disruption_budget(target: str, deployment: str) -> None:
    objs = render(target)
    labels = _pod_labels(objs, deployment)
    budgets = [b for b in find(objs, "PodDisruptionBudget") if _selects(b["spec"]["selector"]["matchLabels"], labels)]
    assert len(budgets) == 1 and budgets[0]["spec"].get("maxUnavailable") == 1
    strategy = one(objs, "Deployment", deployment)["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1, "maxUnavailable": 0}


@ALL
def test_autoscalers_and_monitors_name_what_exists(target: str) -> None:
    objs = render(target)
    for scaled in find(objs, "ScaledObject"):
        deployment = one(objs, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in deployment["spec"], "KEDA owns the replica count; apply would reset it"
        for trigger in scaled["spec"]["triggers"]:
            assert f'namespace="{NAMESPACE}"' in trigger["metadata"]["query"]
    services = {s["metadata"]["name"]: s for s in find(objs, "Service")}
    monitors = find(objs, "ServiceMonitor")
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [s for s in services.values() if _selects(selector, s["metadata"]["labels"])]
        assert len(selected) == 1, f"ServiceMonitor {monitor['metadata']['name']} selects {len(selected)} Services"
        port_names = {p["name"] for p in selected[0]["spec"]["ports"]}
        assert all(e["port"] in port_names for e in monitor["spec"]["endpoints"])
    if monitors:
        monitored = {m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for m in monitors}
        assert {*SERVICES, "motionnft-ray-metrics"} <= monitored
