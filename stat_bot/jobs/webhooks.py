"""GitHub events as webhook rules see them: what a rule may ask about, and what a payload gives.

job_configs.py's `webhooks` rules (checked in jobs/config.py against the names
here) are matched in this module against a delivery's event and JSON payload,
so the web route only verifies the signature, parses and enqueues. Only the
parts of a payload a rule can use are read; everything else GitHub sends is
ignored, and a part every payload of that event has but this one lacks is a
PayloadError naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stat_bot.jobs.config import WebhookSpec

# The events a rule can name, with the actions GitHub sends for each (push has none).
ACTIONS: dict[str, tuple[str, ...]] = {
    "push": (),
    "pull_request": (
        "assigned", "auto_merge_disabled", "auto_merge_enabled", "closed", "converted_to_draft",
        "demilestoned", "dequeued", "edited", "enqueued", "labeled", "locked", "milestoned",
        "opened", "ready_for_review", "reopened", "review_request_removed", "review_requested",
        "synchronize", "unassigned", "unlabeled", "unlocked",
    ),
    "release": (
        "created", "deleted", "edited", "prereleased", "published", "released", "unpublished",
    ),
}  # fmt: skip

# The `{names}` a rule's args may use, by event: what `read_event` takes from the payload.
VALUES: dict[str, tuple[str, ...]] = {
    "push": ("repository", "sender", "ref", "branch", "tag", "sha", "before"),
    "pull_request": (
        "repository", "sender", "action", "number", "branch", "head_branch", "sha", "head_sha",
        "title", "url",
    ),
    "release": ("repository", "sender", "action", "tag", "name", "url", "target"),
}  # fmt: skip

DEFAULT_BRANCH = "default"  # a rule's "branch": "default" means the repository's default branch


JSON_TYPES: dict[type, str] = {
    str: "a string", int: "a number", bool: "true or false", float: "a number",
    dict: "an object", list: "an array",
}  # fmt: skip


class PayloadError(ValueError):
    """The payload lacks (or has the wrong type for) a part every payload of its event has."""


@dataclass(frozen=True)
class GitHubEvent:
    """One delivery's event, reduced to what rules match on and what job args can use."""

    name: str
    action: str | None
    repository: str
    default_branch: str | None
    branch: str | None  # push: the pushed branch; pull_request: the base (target) branch
    tag: str | None
    merged: bool | None
    deleted: bool
    sender: str
    values: Mapping[str, str]

    @property
    def summary(self) -> str:
        """A few words for people: `pull request #12 merged into main by alice`."""
        v = self.values
        if self.name == "push":
            what = f"tag {self.tag}" if self.tag else f"{self.branch or v['ref']}"
            return f"push to {what} ({v['sha'][:7]}) in {self.repository} by {self.sender}"
        if self.name == "pull_request":
            done = (
                f"merged into {self.branch}" if self.merged else f"{self.action} on {self.branch}"
            )
            return f"pull request #{v['number']} {done} in {self.repository} by {self.sender}"
        return f"release {self.tag} {self.action} in {self.repository} by {self.sender}"


def _get(payload: Mapping[str, Any], path: str, kind: type, *, required: bool = True) -> Any:
    node: Any = payload
    for part in path.split("."):
        if not isinstance(node, Mapping) or node.get(part) is None:
            if required:
                raise PayloadError(f"the payload has no {path!r}")
            return None
        node = node[part]
    if not isinstance(node, kind) or (kind is int and isinstance(node, bool)):
        got = JSON_TYPES.get(type(node), f"a {type(node).__name__}")
        raise PayloadError(f"{path!r} in the payload must be {JSON_TYPES[kind]}, not {got}")
    return node


def read_event(name: str, payload: Mapping[str, Any]) -> GitHubEvent:
    """The parts of a `push`, `pull_request` or `release` payload that rules use."""
    repository = _get(payload, "repository.full_name", str)
    default_branch = _get(payload, "repository.default_branch", str, required=False)
    sender = _get(payload, "sender.login", str, required=False) or "unknown"
    common = {"repository": repository, "sender": sender}
    if name == "push":
        ref = _get(payload, "ref", str)
        branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
        tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else None
        values = {
            **common,
            "ref": ref,
            "branch": branch or "",
            "tag": tag or "",
            "sha": _get(payload, "after", str),
            "before": _get(payload, "before", str, required=False) or "",
        }
        deleted = bool(_get(payload, "deleted", bool, required=False))
        return GitHubEvent(
            name, None, repository, default_branch, branch, tag, None, deleted, sender, values
        )
    action = _get(payload, "action", str)
    if name == "pull_request":
        merged = bool(_get(payload, "pull_request.merged", bool, required=False))
        head_sha = _get(payload, "pull_request.head.sha", str)
        merge_sha = _get(payload, "pull_request.merge_commit_sha", str, required=False)
        base = _get(payload, "pull_request.base.ref", str)
        values = {
            **common,
            "action": action,
            "number": str(_get(payload, "pull_request.number", int)),
            "branch": base,
            "head_branch": _get(payload, "pull_request.head.ref", str),
            "sha": merge_sha if merged and merge_sha else head_sha,
            "head_sha": head_sha,
            "title": _get(payload, "pull_request.title", str, required=False) or "",
            "url": _get(payload, "pull_request.html_url", str, required=False) or "",
        }
        return GitHubEvent(
            name, action, repository, default_branch, base, None, merged, False, sender, values
        )
    if name == "release":
        tag = _get(payload, "release.tag_name", str)
        values = {
            **common,
            "action": action,
            "tag": tag,
            "name": _get(payload, "release.name", str, required=False) or "",
            "url": _get(payload, "release.html_url", str, required=False) or "",
            "target": _get(payload, "release.target_commitish", str, required=False) or "",
        }
        return GitHubEvent(
            name, action, repository, default_branch, None, tag, None, False, sender, values
        )
    raise ValueError(f"no rules can name the event {name!r}")


def matches(rule: WebhookSpec, event: GitHubEvent) -> bool:
    """Whether the event meets every condition the rule sets (unset conditions match anything)."""
    if rule.event != event.name or event.deleted:  # a deleted branch or tag builds nothing
        return False
    if rule.repository is not None and rule.repository.lower() != event.repository.lower():
        return False
    if rule.action is not None and rule.action != event.action:
        return False
    if rule.merged is not None and rule.merged != event.merged:
        return False
    if rule.branch is not None:
        wanted = event.default_branch if rule.branch == DEFAULT_BRANCH else rule.branch
        if event.branch is None or wanted is None or not fnmatchcase(event.branch, wanted):
            return False
    return rule.tag is None or (event.tag is not None and fnmatchcase(event.tag, rule.tag))


def rule_args(rule: WebhookSpec, event: GitHubEvent) -> dict[str, str]:
    """The job's arguments: each of the rule's `args` with the event's `{values}` filled in."""
    return {key: value.format_map(event.values) for key, value in rule.args.items()}
