"""Every metric the alerts and the autoscalers query is one that something exports: the services'
registries (read from the apps), the trainer's Ray counters (read from its source), or
kube-state-metrics / Prometheus itself."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from services.mllm_judge.app import create_app as judge_app
from services.mllm_judge.settings import MllmJudgeSettings
from services.reward_api.app import create_app as reward_app
from services.reward_api.settings import RewardApiSettings
from tests.k8s.manifests import REPO, TARGETS, find, render, target_id

NAME = re.compile(r"\b(reward_api_\w+|mllm_judge_\w+|ray_\w+|kube_\w+|up)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# kube-state-metrics names the alerts use (docs/operations.md says they need it).
KUBE_STATE = {"kube_deployment_status_replicas_available", "kube_deployment_status_replicas_unavailable"}


def exported() -> set[str]:
    """Series names both services expose at /metrics (without loading a model)."""
    names: set[str] = set()
    for app in (reward_app(RewardApiSettings()), judge_app(MllmJudgeSettings())):
        text = TestClient(app).get("/metrics").text
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
            # A counter's TYPE line already ends in _total with this prometheus_client.
            base = name.removesuffix("_total") if kind == "counter" else name
            names |= {base + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return names


def ray_counters() -> set[str]:
    """`ray_<name>_total` for every ray.util.metrics Counter the trainer creates."""
    source = "\n".join(p.read_text() for p in (REPO / "trainer").glob("*.py"))
    return {f"ray_{name}_total" for name in re.findall(r'Counter\(\s*"(\w+)"', source)}


def queried(target: str) -> set[str]:
    objs = render(target)
    exprs = [r["expr"] for rule in find(objs, "PrometheusRule") for g in rule["spec"]["groups"] for r in g["rules"]]
    exprs += [t["metadata"]["query"] for s in find(objs, "ScaledObject") for t in s["spec"]["triggers"]]
    return {name for expr in exprs for name in NAME.findall(expr)}


@pytest.mark.parametrize("target", sorted(TARGETS), ids=target_id)
def test_every_queried_metric_exists(target: str) -> None:
    unknown = queried(target) - exported() - ray_counters() - KUBE_STATE - {"up"}
    assert not unknown, f"queried but exported by nothing: {sorted(unknown)}"


def test_the_alerts_cover_what_ops_asked_for() -> None:
    names = queried("gpu")
    assert {"ray_motionnft_groups_dropped_total", "reward_api_requests_total", "mllm_judge_requests_total"} <= names
    assert {"reward_api_queued_items", "reward_api_queue_limit_items", "mllm_judge_in_flight_limit"} <= names
    assert "kube_deployment_status_replicas_available" in names
    (rule,) = find(render("gpu"), "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    headings = re.findall(r"^### (.+)$", (REPO / "docs" / "operations.md").read_text(), flags=re.MULTILINE)
    for alert in alerts:
        assert any(alert in h.split(", ") for h in headings), f"{alert} has no section in docs/operations.md"
    # Each runbook link is the anchor of such a heading (GitHub's: lower case, ', ' -> '-').
    anchors = {h.lower().replace(", ", "-") for h in headings}
    for r in (r for g in rule["spec"]["groups"] for r in g["rules"]):
        path, _, anchor = r["annotations"]["runbook"].partition("#")
        assert path == "docs/operations.md" and anchor in anchors, r["annotations"]["runbook"]
