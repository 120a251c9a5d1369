"""Settings refuse what they cannot honour: a prefixed variable that is no setting stops the service."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.mllm_judge.settings import MllmJudgeSettings
from services.reward_api.settings import RewardApiSettings
from services.serving.settings import UnknownSettingError
from tests.services.harness import REPO_ROOT


@pytest.mark.parametrize(
    ("settings_cls", "typo", "meant"),
    [
        (RewardApiSettings, "REWARD_API_MAX_INFLIGHT", "REWARD_API_MAX_IN_FLIGHT"),
        (RewardApiSettings, "REWARD_API_CACHE_ENTRIES", "REWARD_API_CACHE_MB"),  # renamed: refused, not ignored
        (MllmJudgeSettings, "MLLM_JUDGE_OPENAI_BASEURL", "MLLM_JUDGE_OPENAI_BASE_URL"),
    ],
)
def test_a_typo_names_itself_and_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, settings_cls: type, typo: str, meant: str
) -> None:
    monkeypatch.setenv(typo, "32")
    with pytest.raises(UnknownSettingError, match=f"{typo} is not a setting of this service; did you mean {meant}"):
        settings_cls()


def test_real_variables_and_other_prefixes_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWARD_API_MAX_IN_FLIGHT", "7")
    monkeypatch.setenv("MLLM_JUDGE_BACKEND", "similarity")  # the other service's variables are not ours
    assert RewardApiSettings().max_in_flight == 7


def test_a_service_with_a_typo_in_its_environment_does_not_start() -> None:
    env = {**os.environ, "REWARD_API_MAX_INFLIGHT": "32", "REWARD_API_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "services.reward_api"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "reward API: REWARD_API_MAX_INFLIGHT is not a setting of this service; did you mean REWARD_API_MAX_IN_FLIGHT?"
    ]


def test_a_bad_value_is_one_clear_line() -> None:
    env = {**os.environ, "MLLM_JUDGE_MAX_GROUPS": "100000", "MLLM_JUDGE_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "services.mllm_judge"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().startswith("MLLM judge: invalid settings: max_groups: Input should be less than")
