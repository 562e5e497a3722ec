"""The one place a request for a job is built, whoever asks for it.

Every source (a chat command, `stat-bot enqueue`, a GitHub webhook rule, a Trac
rule, a schedule) turns what it was asked into a `JobRequest` here, so the job
type's own limits (concurrency, coalescing, retries) and where its report goes
follow the same rule everywhere.

Where the report goes, first that is set:

1. the channel the request itself names: where a Slack command was typed (and its
   thread), `stat-bot enqueue --channel`, a webhook rule's, Trac rule's or schedule's
   `channel`;
2. the job's `report_channel`;
3. the namespace's `default_channel`;
4. the site's channel for the source, if it has one: `STAT_CHANNEL` for Trac rules
   and for the active-tickets schedule (ticket reports go where ticket notices go).

With none of these the report goes to `SLACK_LOGS_CHANNEL` when it is delivered.
README.md ("Configuring jobs") says the same for people writing job_configs.py.

A job type with `exclusive` also gets here the nodes its target arg selects and
their lock keys (jobs/targets.py), once: the confirmation shows them and the
dispatcher locks them, from the same request.
"""

from __future__ import annotations

from collections.abc import Mapping

from stat_bot.hardware.inventory import Inventory
from stat_bot.jobs.config import Namespace
from stat_bot.jobs.model import JobRequest, Source
from stat_bot.jobs.targets import expand


def report_channel(
    namespace: Namespace,
    job_type: str,
    asked: str | None = None,
    site_channel: str | None = None,
) -> str | None:
    """Where a job's report goes: the rule above, for a job type of `namespace`."""
    job = namespace.spec.jobs[job_type]
    return asked or job.report_channel or namespace.spec.default_channel or site_channel


def build_request(
    namespace: Namespace,
    job_type: str,
    *,
    source: Source,
    args: Mapping[str, str] | None = None,
    channel: str | None = None,
    site_channel: str | None = None,
    thread_ts: str | None = None,
    user: str | None = None,
    user_name: str | None = None,
    delay_seconds: float = 0.0,
    is_im: bool = False,
    inventory: Inventory | None = None,
    confirmed_by: str | None = None,
) -> JobRequest:
    """The request for one job of `namespace`, with its type's limits from job_configs.py.

    `channel` is the channel the request names (step 1 of the rule), `site_channel`
    the site's fallback for this source (step 4); KeyError for a job type the
    namespace does not have (callers match or validate before building). `inventory`:
    the site's nodes, to expand an exclusive job's target (ArgsError for a target that
    selects none); without it the target is locked as typed.
    """
    job = namespace.spec.jobs[job_type]
    args = dict(args or {})
    targets = None
    if job.exclusive:
        targets = expand(str(args.get(job.exclusive, "")), inventory)
    return JobRequest(
        namespace=namespace.name,
        job_type=job_type,
        args=args,
        channel=report_channel(namespace, job_type, channel, site_channel),
        thread_ts=thread_ts,
        user=user,
        source=source,
        delay_seconds=delay_seconds,
        concurrency=job.concurrency,
        coalesce=job.coalesce,
        retries=job.retries,
        is_im=is_im,
        user_name=user_name,
        targets=targets,
        confirmed_by=confirmed_by,
    )
