"""GitHub webhook payloads as GitHub sends them, and the signature it puts on them.

The shapes follow GitHub's webhook documentation (`push`, `pull_request`,
`release`, `ping`): the nesting, names and types of the fields are GitHub's,
including the many fields STAT bot ignores, so a test proves the rules read
real deliveries and not a convenient subset.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

OWNER = "hpe-hpc"
REPO = "stat"
FULL_NAME = f"{OWNER}/{REPO}"
HEAD_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
MERGE_SHA = "c4295bd74fb0f4fda03689c3df3f2803b658fd85"
BASE_SHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
PUSH_AFTER = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
PUSH_BEFORE = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
ZERO_SHA = "0" * 40


def sign(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub computes: HMAC-SHA256 of the raw body, in hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_sha1(secret: str, body: bytes) -> str:
    """The legacy X-Hub-Signature value (HMAC-SHA1)."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def encode(payload: Any) -> bytes:
    """The body as GitHub sends it (compact JSON, UTF-8)."""
    return json.dumps(payload, separators=(",", ":")).encode()


def delivery_id() -> str:
    return str(uuid.uuid4())


def user(login: str = "alice", id_: int = 21031067) -> dict[str, Any]:
    api = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": id_,
        "node_id": "MDQ6VXNlcjIxMDMxMDY3",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{id_}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": "User",
        "site_admin": False,
    }


def repository(
    full_name: str = FULL_NAME, default_branch: str = "main", *, push: bool = False
) -> dict[str, Any]:
    """A repository object; in push payloads GitHub gives times as epoch seconds and master_branch."""
    owner, name = full_name.split("/")
    api = f"https://api.github.com/repos/{full_name}"
    repo: dict[str, Any] = {
        "id": 186853002,
        "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
        "name": name,
        "full_name": full_name,
        "private": True,
        "owner": user(owner, 6811672),
        "html_url": f"https://github.com/{full_name}",
        "description": "System triage and ticketing",
        "fork": False,
        "url": api,
        "forks_url": f"{api}/forks",
        "hooks_url": f"{api}/hooks",
        "branches_url": f"{api}/branches{{/branch}}",
        "tags_url": f"{api}/tags",
        "commits_url": f"{api}/commits{{/sha}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}",
        "pulls_url": f"{api}/pulls{{/number}}",
        "releases_url": f"{api}/releases{{/id}}",
        "created_at": "2019-05-15T15:19:25Z",
        "updated_at": "2024-05-15T15:21:14Z",
        "pushed_at": "2024-05-15T15:20:57Z",
        "git_url": f"git://github.com/{full_name}.git",
        "ssh_url": f"git@github.com:{full_name}.git",
        "clone_url": f"https://github.com/{full_name}.git",
        "svn_url": f"https://github.com/{full_name}",
        "homepage": None,
        "size": 512,
        "stargazers_count": 3,
        "watchers_count": 3,
        "language": "Python",
        "has_issues": True,
        "has_projects": True,
        "has_downloads": True,
        "has_wiki": False,
        "has_pages": False,
        "forks_count": 0,
        "mirror_url": None,
        "archived": False,
        "disabled": False,
        "open_issues_count": 2,
        "license": None,
        "topics": [],
        "visibility": "private",
        "forks": 0,
        "open_issues": 2,
        "watchers": 3,
        "default_branch": default_branch,
    }
    if push:
        repo.update(created_at=1557933565, pushed_at=1715786457, master_branch=default_branch)
        repo["stargazers"] = 3
    return repo


def commit(sha: str, message: str = "Fix the node check", author: str = "alice") -> dict[str, Any]:
    person = {"name": author.title(), "email": f"{author}@example.org", "username": author}
    return {
        "id": sha,
        "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
        "distinct": True,
        "message": message,
        "timestamp": "2024-05-15T15:20:30+00:00",
        "url": f"https://github.com/{FULL_NAME}/commit/{sha}",
        "author": person,
        "committer": person,
        "added": [],
        "removed": [],
        "modified": ["workspace/hw/check.py"],
    }


def push(
    ref: str = "refs/heads/main",
    *,
    after: str = PUSH_AFTER,
    before: str = PUSH_BEFORE,
    deleted: bool = False,
    default_branch: str = "main",
    full_name: str = FULL_NAME,
    sender: str = "alice",
) -> dict[str, Any]:
    commits = [] if deleted else [commit(after)]
    return {
        "ref": ref,
        "before": before,
        "after": ZERO_SHA if deleted else after,
        "repository": repository(full_name, default_branch, push=True),
        "pusher": {"name": sender, "email": f"{sender}@example.org"},
        "sender": user(sender),
        "created": False,
        "deleted": deleted,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/{full_name}/compare/{before[:12]}...{after[:12]}",
        "commits": commits,
        "head_commit": commits[0] if commits else None,
    }


def pull_request(
    action: str = "closed",
    *,
    merged: bool = True,
    base: str = "main",
    head: str = "fix-node-check",
    number: int = 12,
    default_branch: str = "main",
    full_name: str = FULL_NAME,
    sender: str = "alice",
) -> dict[str, Any]:
    repo = repository(full_name, default_branch)
    closed = action == "closed"
    api = f"https://api.github.com/repos/{full_name}"
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "url": f"{api}/pulls/{number}",
            "id": 279147437,
            "node_id": "MDExOlB1bGxSZXF1ZXN0Mjc5MTQ3NDM3",
            "html_url": f"https://github.com/{full_name}/pull/{number}",
            "diff_url": f"https://github.com/{full_name}/pull/{number}.diff",
            "patch_url": f"https://github.com/{full_name}/pull/{number}.patch",
            "issue_url": f"{api}/issues/{number}",
            "number": number,
            "state": "closed" if closed else "open",
            "locked": False,
            "title": "Fix the node check's timeout",
            "user": user(sender),
            "body": "The Redfish call can take 20 s on a busy BMC.",
            "created_at": "2024-05-15T15:20:33Z",
            "updated_at": "2024-05-15T15:21:18Z",
            "closed_at": "2024-05-15T15:21:18Z" if closed else None,
            "merged_at": "2024-05-15T15:21:18Z" if closed and merged else None,
            # GitHub fills this for unmerged pull requests too (the test merge commit).
            "merge_commit_sha": MERGE_SHA,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "labels": [{"id": 1362934389, "name": "bug", "color": "d73a4a", "default": True}],
            "milestone": None,
            "draft": False,
            "commits_url": f"{api}/pulls/{number}/commits",
            "statuses_url": f"{api}/statuses/{HEAD_SHA}",
            "head": {
                "label": f"{full_name.split('/')[0]}:{head}",
                "ref": head,
                "sha": HEAD_SHA,
                "user": user(sender),
                "repo": repo,
            },
            "base": {
                "label": f"{full_name.split('/')[0]}:{base}",
                "ref": base,
                "sha": BASE_SHA,
                "user": user(full_name.split("/")[0], 6811672),
                "repo": repo,
            },
            "author_association": "MEMBER",
            "auto_merge": None,
            "active_lock_reason": None,
            "merged": closed and merged,
            "mergeable": None,
            "rebaseable": None,
            "mergeable_state": "unknown",
            "merged_by": user("bob", 5346) if closed and merged else None,
            "comments": 1,
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": 3,
            "deletions": 1,
            "changed_files": 1,
        },
        "repository": repo,
        "sender": user(sender),
    }


def release(
    action: str = "published",
    *,
    tag: str = "v1.2.0",
    target: str = "main",
    full_name: str = FULL_NAME,
    sender: str = "alice",
) -> dict[str, Any]:
    api = f"https://api.github.com/repos/{full_name}"
    return {
        "action": action,
        "release": {
            "url": f"{api}/releases/11248810",
            "assets_url": f"{api}/releases/11248810/assets",
            "upload_url": f"https://uploads.github.com/repos/{full_name}/releases/11248810/assets{{?name,label}}",
            "html_url": f"https://github.com/{full_name}/releases/tag/{tag}",
            "id": 11248810,
            "node_id": "MDc6UmVsZWFzZTExMjQ4ODEw",
            "tag_name": tag,
            "target_commitish": target,
            "name": f"STAT bot {tag}",
            "draft": False,
            "author": user(sender),
            "prerelease": False,
            "created_at": "2024-05-15T15:19:25Z",
            "published_at": "2024-05-15T15:20:53Z",
            "assets": [],
            "tarball_url": f"{api}/tarball/{tag}",
            "zipball_url": f"{api}/zipball/{tag}",
            "body": "Node checks time out after 30 s.",
        },
        "repository": repository(full_name),
        "sender": user(sender),
    }


def ping(full_name: str = FULL_NAME, url: str = "https://stat.example.org/github/site") -> dict:
    return {
        "zen": "Keep it logically awesome.",
        "hook_id": 109948940,
        "hook": {
            "type": "Repository",
            "id": 109948940,
            "name": "web",
            "active": True,
            "events": ["push", "pull_request", "release"],
            "config": {"content_type": "json", "insecure_ssl": "0", "url": url},
            "updated_at": "2024-05-15T15:20:49Z",
            "created_at": "2024-05-15T15:20:49Z",
            "url": f"https://api.github.com/repos/{full_name}/hooks/109948940",
            "test_url": f"https://api.github.com/repos/{full_name}/hooks/109948940/test",
            "ping_url": f"https://api.github.com/repos/{full_name}/hooks/109948940/pings",
            "deliveries_url": f"https://api.github.com/repos/{full_name}/hooks/109948940/deliveries",
            "last_response": {"code": None, "status": "unused", "message": None},
        },
        "repository": repository(full_name),
        "sender": user(),
    }
