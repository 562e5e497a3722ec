"""Webhook rules: which GitHub event meets which rule, what it passes to the job, and every
mistake in a `webhooks` list explained by check-config."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from stat_bot.jobs.config import WebhookSpec, parse_config
from stat_bot.jobs.webhooks import VALUES, PayloadError, matches, read_event, rule_args
from tests import github_payloads as gh
from tests.unit.helpers import problems_of

ROOT = Path(__file__).resolve().parents[2]


def rule(**values: Any) -> WebhookSpec:
    return WebhookSpec.model_validate({"job_type": "deploy", **values})


def fires(spec: WebhookSpec, event: str, payload: dict[str, Any]) -> bool:
    return matches(spec, read_event(event, payload))


MERGED_TO_DEFAULT = rule(
    event="pull_request", action="closed", merged=True, branch="default", delay_seconds=60
)


# --- matching ----------------------------------------------------------------------------


def test_a_pull_request_merged_into_the_default_branch_deploys():
    assert fires(MERGED_TO_DEFAULT, "pull_request", gh.pull_request("closed", merged=True))


@pytest.mark.parametrize(
    "payload",
    [
        gh.pull_request("closed", merged=False),  # closed without merging
        gh.pull_request("closed", merged=True, base="develop"),  # merged elsewhere
        gh.pull_request("opened", merged=False),
        gh.pull_request("labeled", merged=False),
        gh.pull_request("synchronize", merged=False),
    ],
    ids=["closed-unmerged", "merged-into-develop", "opened", "labeled", "synchronize"],
)
def test_other_pull_request_events_do_not_deploy(payload):
    assert not fires(MERGED_TO_DEFAULT, "pull_request", payload)


def test_default_is_the_repositorys_own_default_branch():
    on_master = gh.pull_request("closed", base="master", default_branch="master")
    assert fires(MERGED_TO_DEFAULT, "pull_request", on_master)
    main_not_default = gh.pull_request("closed", base="main", default_branch="master")
    assert not fires(MERGED_TO_DEFAULT, "pull_request", main_not_default)


def test_a_closed_unmerged_rule_matches_only_those():
    spec = rule(event="pull_request", action="closed", merged=False)
    assert fires(spec, "pull_request", gh.pull_request("closed", merged=False))
    assert not fires(spec, "pull_request", gh.pull_request("closed", merged=True))


@pytest.mark.parametrize(
    ("branch", "ref", "expected"),
    [
        ("main", "refs/heads/main", True),
        ("main", "refs/heads/main-old", False),
        ("main", "refs/heads/feature", False),
        ("main", "refs/tags/main", False),  # a tag named like the branch is not the branch
        ("release/*", "refs/heads/release/2.1", True),
        ("release/*", "refs/heads/releases", False),
        ("default", "refs/heads/main", True),
        ("default", "refs/heads/develop", False),
    ],
)
def test_push_branch(branch, ref, expected):
    assert fires(rule(event="push", branch=branch), "push", gh.push(ref)) is expected


def test_push_tag():
    spec = rule(event="push", tag="v*")
    assert fires(spec, "push", gh.push("refs/tags/v1.2.0"))
    assert not fires(spec, "push", gh.push("refs/tags/nightly"))
    assert not fires(spec, "push", gh.push("refs/heads/v2"))


def test_deleting_a_branch_or_tag_never_matches():
    assert not fires(rule(event="push", branch="main"), "push", gh.push(deleted=True))
    assert not fires(rule(event="push"), "push", gh.push("refs/tags/v1", deleted=True))


def test_a_rule_without_conditions_matches_every_event_of_its_kind():
    assert fires(rule(event="push"), "push", gh.push("refs/heads/anything"))
    assert fires(rule(event="push"), "push", gh.push("refs/tags/v9"))
    assert fires(rule(event="release"), "release", gh.release("created"))


def test_release_action_and_tag():
    spec = rule(event="release", action="published", tag="v*")
    assert fires(spec, "release", gh.release("published", tag="v1.2.0"))
    assert not fires(spec, "release", gh.release("created", tag="v1.2.0"))
    assert not fires(spec, "release", gh.release("published", tag="nightly"))


def test_a_rule_only_matches_its_own_event():
    assert not fires(rule(event="release"), "push", gh.push())
    assert not fires(rule(event="push"), "pull_request", gh.pull_request())


def test_repository_condition_ignores_case():
    spec = rule(event="push", repository="HPE-HPC/Stat")
    assert fires(spec, "push", gh.push())
    assert not fires(spec, "push", gh.push(full_name="hpe-hpc/other"))


# --- what the job gets ---------------------------------------------------------------------


def test_args_fill_event_values_into_the_rules_text():
    spec = rule(
        event="pull_request",
        action="closed",
        merged=True,
        args={"sha": "{sha}", "what": "PR {number} by {sender} ({head_branch}->{branch})"},
    )
    event = read_event("pull_request", gh.pull_request(sender="carol"))
    assert rule_args(spec, event) == {
        "sha": gh.MERGE_SHA,
        "what": "PR 12 by carol (fix-node-check->main)",
    }


def test_sha_is_the_merge_commit_only_once_merged():
    merged = read_event("pull_request", gh.pull_request("closed", merged=True))
    opened = read_event("pull_request", gh.pull_request("opened", merged=False))
    assert merged.values["sha"] == gh.MERGE_SHA
    assert opened.values["sha"] == gh.HEAD_SHA
    assert merged.values["head_sha"] == opened.values["head_sha"] == gh.HEAD_SHA


def test_push_values():
    branch = read_event("push", gh.push("refs/heads/release/2.1"))
    assert branch.values["branch"] == "release/2.1"
    assert branch.values["tag"] == ""
    assert branch.values["sha"] == gh.PUSH_AFTER
    assert branch.values["before"] == gh.PUSH_BEFORE
    assert branch.values["ref"] == "refs/heads/release/2.1"
    tag = read_event("push", gh.push("refs/tags/v1.2.0"))
    assert (tag.branch, tag.tag, tag.values["tag"], tag.values["branch"]) == (
        None,
        "v1.2.0",
        "v1.2.0",
        "",
    )


def test_release_values():
    event = read_event("release", gh.release("published", tag="v2.0", target="stable"))
    assert event.values["tag"] == "v2.0"
    assert event.values["target"] == "stable"
    assert event.values["name"] == "STAT bot v2.0"
    assert event.values["url"].endswith("/releases/tag/v2.0")


@pytest.mark.parametrize("event", sorted(VALUES))
def test_every_value_a_rule_may_name_is_read(event):
    payload = {"push": gh.push, "pull_request": gh.pull_request, "release": gh.release}[event]()
    assert set(read_event(event, payload).values) == set(VALUES[event])


def test_literal_braces_stay_braces():
    spec = rule(event="push", args={"x": "{{not a value}} {sha}"})
    assert rule_args(spec, read_event("push", gh.push())) == {"x": "{not a value} " + gh.PUSH_AFTER}


def test_summaries_say_what_happened():
    assert (
        read_event("pull_request", gh.pull_request(sender="bob")).summary
        == "pull request #12 merged into main in hpe-hpc/stat by bob"
    )
    assert read_event("push", gh.push()).summary == (
        f"push to main ({gh.PUSH_AFTER[:7]}) in hpe-hpc/stat by alice"
    )
    assert read_event("release", gh.release()).summary == (
        "release v1.2.0 published in hpe-hpc/stat by alice"
    )


@pytest.mark.parametrize(
    ("event", "payload", "path"),
    [
        ("push", {k: v for k, v in gh.push().items() if k != "ref"}, "'ref'"),
        ("push", {**gh.push(), "repository": None}, "'repository.full_name'"),
        ("pull_request", {**gh.pull_request(), "pull_request": {}}, "'pull_request."),
        ("release", {**gh.release(), "release": {"name": "x"}}, "'release.tag_name'"),
        ("pull_request", {k: v for k, v in gh.pull_request().items() if k != "action"}, "'action'"),
    ],
)
def test_a_payload_missing_what_every_such_payload_has(event, payload, path):
    with pytest.raises(PayloadError, match=re.escape(path)):
        read_event(event, payload)


def test_a_payload_part_of_the_wrong_type():
    payload = gh.pull_request()
    payload["pull_request"]["number"] = "12"
    with pytest.raises(
        PayloadError,
        match=re.escape("'pull_request.number' in the payload must be a number, not a string"),
    ):
        read_event("pull_request", payload)


# --- validation --------------------------------------------------------------------------

JOBS = {
    "deploy": {"run_args_template": "fab deploy --sha {sha}"},
    "build": {"run_args_template": "make build"},
    "release": {"run_args_template": "bash release.sh {tag}"},
}


def webhooks(*rules: dict[str, Any], jobs: dict[str, Any] | None = None, **extra: Any) -> dict:
    return {"site": {"jobs": JOBS if jobs is None else jobs, "webhooks": list(rules), **extra}}


def test_a_valid_rule_list_loads():
    configs = parse_config(
        webhooks(
            {
                "event": "pull_request",
                "action": "closed",
                "merged": True,
                "branch": "default",
                "job_type": "deploy",
                "args": {"sha": "{sha}"},
                "delay_seconds": 60,
            },
            {"event": "push", "branch": "main", "job_type": "build", "channel": "#builds"},
            {
                "event": "release",
                "action": "published",
                "job_type": "release",
                "args": {"tag": "v{tag}"},
            },
        )
        | {"other": {"jobs": JOBS}}
    )
    rules = configs.namespaces["site"].spec.webhooks
    assert [(r.event, r.job_type) for r in rules] == [
        ("pull_request", "deploy"),
        ("push", "build"),
        ("release", "release"),
    ]
    assert rules[0].delay_seconds == 60
    assert configs.webhook_projects() == ["site"]


def test_the_example_in_job_configs_py_is_valid():
    """The commented example in the shipped job_configs.py loads once uncommented."""
    text = (ROOT / "job_configs.py").read_text()
    block = re.search(r'# "webhooks": \[\n(.*?)\n\s*# \],', text, re.S)
    assert block, "job_configs.py has no commented webhooks example"
    rules = ast.literal_eval("[" + re.sub(r"(?m)^\s*# ?", "", block.group(1)) + "]")
    jobs = {
        "deploy": {"run_args_template": "fab deploy"},
        "build": {"run_args_template": "make build SHA={sha}"},
        "release": {"run_args_template": "bash release.sh"},
    }
    configs = parse_config({"system": {"jobs": jobs, "webhooks": rules}})
    assert len(configs.namespaces["system"].spec.webhooks) == len(rules) == 3


def test_unknown_key_names_the_rule_and_suggests():
    (problem,) = problems_of(webhooks({"event": "push", "job_type": "build", "brnach": "main"}))
    assert problem.startswith("namespace 'site', webhook #1 (push -> build): ")
    assert "unknown key 'brnach' (did you mean 'branch'?)" in problem
    assert "valid keys: event, action, merged, branch, tag" in problem


def test_unknown_event_lists_the_known_ones():
    (problem,) = problems_of(webhooks({"event": "pull-request", "job_type": "deploy"}))
    assert "webhook #1 (pull-request -> deploy): key 'event'" in problem
    assert "'push', 'pull_request' or 'release'" in problem
    assert "(got 'pull-request')" in problem


def test_unknown_job_type_suggests_the_close_one():
    (problem,) = problems_of(webhooks({"event": "push", "job_type": "biuld"}))
    assert "webhook #1 (push -> biuld): key 'job_type': unknown job 'biuld'" in problem
    assert "did you mean 'build'?" in problem
    assert "jobs in this namespace: deploy, build, release" in problem


def test_merged_as_an_action_explains_how_to_say_it():
    (problem,) = problems_of(
        webhooks({"event": "pull_request", "action": "merged", "job_type": "build"})
    )
    assert "key 'action': 'merged' is not a pull_request action" in problem
    assert "valid actions: assigned," in problem
    assert '"action": "closed" with "merged": True' in problem


def test_misspelt_action_is_suggested():
    (problem,) = problems_of(
        webhooks({"event": "release", "action": "publish", "job_type": "build"})
    )
    assert "'publish' is not a release action (did you mean 'published'?)" in problem


@pytest.mark.parametrize(
    ("rule_", "fragment"),
    [
        ({"event": "push", "action": "closed"}, "key 'action': a push has no action"),
        ({"event": "push", "merged": True}, "key 'merged': only a pull_request is merged"),
        ({"event": "pull_request", "merged": True}, 'add "action": "closed"'),
        (
            {"event": "pull_request", "action": "opened", "merged": False},
            'add "action": "closed"',
        ),
        ({"event": "release", "branch": "main"}, "key 'branch': a release has no branch"),
        ({"event": "pull_request", "tag": "v*"}, "key 'tag': a pull request has no tag"),
        (
            {"event": "push", "branch": "main", "tag": "v*"},
            "keys 'branch' and 'tag': a push is to a branch or to a tag, never both",
        ),
        (
            {"event": "push", "branch": "refs/heads/main"},
            "key 'branch': give the branch name or a glob, such as 'main', not 'refs/heads/main'",
        ),
        (
            {"event": "push", "tag": "refs/tags/v1"},
            "key 'tag': give the tag name or a glob, such as 'v1', not 'refs/tags/v1'",
        ),
        ({"event": "push", "branch": " "}, "key 'branch': give the branch name or a glob"),
        ({"event": "push", "repository": "stat"}, "key 'repository': 'stat' is not a repository"),
        ({"event": "push", "delay_seconds": -1}, "key 'delay_seconds'"),
    ],
)
def test_conditions_an_event_cannot_meet(rule_, fragment):
    (problem,) = problems_of(webhooks({"job_type": "build", **rule_}))
    assert f"webhook #1 ({rule_['event']} -> build)" in problem
    assert fragment in problem


def test_args_must_fill_exactly_the_jobs_template_fields():
    (problem,) = problems_of(
        webhooks({"event": "push", "job_type": "deploy", "args": {"commit": "{sha}"}})
    )
    assert "key 'args' must give exactly ['sha'] for job 'deploy'" in problem
    assert "'fab deploy --sha {sha}'" in problem
    assert "got ['commit']" in problem


def test_a_job_with_fields_needs_args():
    (problem,) = problems_of(webhooks({"event": "push", "job_type": "deploy"}))
    assert "key 'args' must give exactly ['sha']" in problem
    assert "got []" in problem


def test_args_may_only_use_the_events_values():
    (problem,) = problems_of(
        webhooks({"event": "release", "job_type": "release", "args": {"tag": "{sah}{tag}"}})
    )
    assert "key 'args.tag': {sah} is not a release value" in problem
    assert "a release gives {repository}, {sender}, {action}, {tag}" in problem
    (problem,) = problems_of(
        webhooks({"event": "push", "job_type": "deploy", "args": {"sha": "{number}"}})
    )
    assert "{number} is not a push value" in problem  # only pull requests have a number


def test_malformed_args_placeholders():
    (problem,) = problems_of(
        webhooks({"event": "push", "job_type": "deploy", "args": {"sha": "{sha:.7}"}})
    )
    assert "key 'args.sha': placeholder {sha:.7} must be a plain name" in problem


def test_rules_keep_their_place_when_an_earlier_one_is_refused():
    problems = problems_of(
        webhooks(
            "not a rule",
            {"event": "push", "job_type": "build", "colour": "red"},
            {"event": "push", "job_type": "nope"},
        )
    )
    assert len(problems) == 3, problems
    assert problems[0].startswith("namespace 'site', webhook #1: ")
    assert "webhook #2 (push -> build): unknown key 'colour'" in problems[1]
    assert "webhook #3 (push -> nope): key 'job_type': unknown job 'nope'" in problems[2]


def test_a_refused_job_is_not_blamed_again_in_its_rules():
    (problem,) = problems_of(
        webhooks(
            {"event": "push", "job_type": "broken"},
            jobs={**JOBS, "broken": {"run_args_template": "x", "timeout": -1}},
        )
    )
    assert "job 'broken'" in problem
    assert "key 'timeout'" in problem


def test_webhooks_must_be_a_list():
    (problem,) = problems_of({"site": {"jobs": JOBS, "webhooks": {"event": "push"}}})
    assert "namespace 'site': key 'webhooks'" in problem
    assert "list" in problem
