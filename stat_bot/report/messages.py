"""A finished job's output -> the messages that report it.

The format rules (ebmbot's, kept): `text` posts stdout; `blocks` posts stdout as a
Block Kit list (or an object of blocks, notification text and a file to attach);
`code` wraps stdout in a code block, or uploads it as a file when too long for one
message; `file` uploads it. Failures always report, naming the
job, why it ended, the end of stderr and how to read the logs. Everything here
is pure: the outbox (report/outbox.py) and its notifier carry the messages.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stat_bot.jobs.config import JobSpec
from stat_bot.jobs.model import Job, JobRequester, JobStatus

# Slack truncates a message's text well above this, but renders ~4,000 at most
# before "show more"; ebmbot's limit for a code block was the same.
MAX_TEXT = 3990
MAX_BLOCKS = 50
MAX_TEXT_PARTS = 5  # a text report longer than this many messages goes up as a file
# A merged requester's copy carries the output itself only up to this size; above it,
# a pointer to the job's report (each copy is stored whole in the outbox).
MAX_COPY_BYTES = 64 * 1024
STDERR_TAIL_LINES = 15
STDERR_TAIL_CHARS = 1500

Kind = Literal["success", "failure", "info"]


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters escaped: text from outside (a ticket summary) can
    then neither mention @channel nor fake a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True, slots=True)
class FileUpload:
    filename: str
    content: bytes
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message: fallback text always, and blocks or a file when the format calls for it."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    file: FileUpload | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """Messages for one destination (a channel and thread), with why they were sent."""

    messages: list[Message]
    kind: Kind = "success"
    channel: str | None = None
    thread_ts: str | None = None
    job_id: int | None = None
    is_im: bool = False
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    #: None for the job's own report; for the copy sent to someone whose request was
    #: merged into the job, that requester (their copy replaces no progress message
    #: and is not reposted to tech support: the job's own report does both once).
    requester: JobRequester | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the runner saw: enough to describe the end of a job without reading the queue."""

    status: JobStatus
    exit_code: int | None = None
    stdout: str = ""
    stderr_tail: str = ""
    log_dir: str | None = None
    timeout: float | None = None
    note: str | None = None


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Cut long text into message-sized pieces, at line ends where possible."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut])
        text = text[cut:].removeprefix("\n")
    if text or not pieces:
        pieces.append(text)
    return pieces


def _label(job: Job) -> str:
    return f"`{job.namespace} {job.job_type}`"


def _queued(job: Job) -> bool:
    """Whether the job is in the queue; `stat-bot exec` runs one with id 0, which is not."""
    return job.id > 0


def _which(job: Job) -> str:
    return f"job #{job.id}" if _queued(job) else "run by `stat-bot exec`, not queued"


def tail(text: str, lines: int = STDERR_TAIL_LINES, chars: int = STDERR_TAIL_CHARS) -> str:
    """The last few lines of some output, bounded in size."""
    kept = text.rstrip("\n").splitlines()[-lines:]
    result = "\n".join(kept)
    return result[-chars:]


def _file_name(job: Job, extension: str = "txt") -> str:
    return f"{job.namespace}-{job.job_type}-{job.id}.{extension}"


BLOCKS_SHAPE = (
    'its output must be a JSON list of Block Kit blocks, each an object with a "type", or an '
    'object {"blocks": [...], "text": "...", "file": {"filename": "...", "content": "..."}}'
)


def _attachment(upload: Any) -> FileUpload | str:
    """The file a blocks report attaches ({"filename", "content", "title"?}), or what is wrong."""
    if (
        not isinstance(upload, dict)
        or not isinstance(upload.get("filename"), str)
        or not upload["filename"].strip()
        or not isinstance(upload.get("content"), str)
        or not isinstance(upload.get("title", ""), str)
    ):
        return 'its "file" must be an object with a "filename" and a "content", both text'
    name = upload["filename"].replace("/", "_")
    return FileUpload(name, upload["content"].encode(), upload.get("title") or name)


def _blocks_messages(job: Job, stdout: str) -> list[Message] | str:
    """Block Kit messages from stdout, or a description of what is wrong with it.

    Stdout is a list of blocks, or an object with "blocks", optionally "text" (what
    notifications show instead of "<job> report") and a "file" to attach after them:
    a script's answer with the full data (a CSV, say) too long for blocks.
    """
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError as error:
        return f"its output is not valid JSON: {error}"
    upload: FileUpload | None = None
    fallback = f"{job.namespace} {job.job_type} report"
    if isinstance(data, dict) and "blocks" in data:
        if isinstance(data.get("text"), str) and data["text"].strip():
            fallback = data["text"][:MAX_TEXT]
        if "file" in data:
            attached = _attachment(data["file"])
            if isinstance(attached, str):
                return attached
            upload = attached
        data = data["blocks"]
    if not isinstance(data, list) or not all(isinstance(b, dict) and "type" in b for b in data):
        return BLOCKS_SHAPE
    if not data and upload is None:
        return "its output is an empty list of blocks"
    messages = [
        Message(text=fallback, blocks=data[i : i + MAX_BLOCKS])
        for i in range(0, len(data), MAX_BLOCKS)
    ]
    if upload is not None:
        messages.append(Message(upload.filename, file=upload))
    return messages


def success_messages(job: Job, spec: JobSpec, stdout: str) -> list[Message] | str:
    """Messages for a successful job (empty: nothing to say), or why its output is unusable."""
    if not spec.report_stdout:
        if spec.report_success:
            return [Message(f"Command {_label(job)} succeeded ({_which(job)}).")]
        return []
    if not stdout.strip():
        if not spec.report_success:  # nothing to say, and no word of success wanted
            return []
        return [Message(f"No output found for command {_label(job)} ({_which(job)}).")]
    fmt = spec.report_format
    if fmt == "blocks":
        return _blocks_messages(job, stdout)
    if fmt == "file":
        return [
            Message(f"Output of {_label(job)}", file=FileUpload(_file_name(job), stdout.encode()))
        ]
    if fmt == "code":
        body = stdout.rstrip("\n")
        if len(body) + 8 > MAX_TEXT:
            return [
                Message(
                    f"Output of {_label(job)} is {len(body):,} characters, so it is attached as a file.",
                    file=FileUpload(_file_name(job), stdout.encode()),
                )
            ]
        return [Message(f"```\n{body}\n```")]
    pieces = split_text(stdout.rstrip("\n"))
    if len(pieces) > MAX_TEXT_PARTS:  # a wall of messages helps nobody: attach it instead
        return [
            Message(
                f"Output of {_label(job)} is {len(stdout):,} characters, so it is attached as a file.",
                file=FileUpload(_file_name(job), stdout.encode()),
            )
        ]
    return [Message(piece) for piece in pieces]


def _why(job: Job, outcome: Outcome) -> str:
    match outcome.status:
        case JobStatus.TIMED_OUT if outcome.timeout is None:
            return "timed out and was stopped"
        case JobStatus.TIMED_OUT:
            return f"timed out after {outcome.timeout:g} s and was stopped"
        case JobStatus.CANCELLED:
            return "was cancelled"
        case JobStatus.LOST:
            return "was lost: the dispatcher running it stopped"
        case _ if outcome.exit_code is not None and outcome.exit_code < 0:
            return f"was killed by signal {-outcome.exit_code}"
        case _:
            return f"failed with exit status {outcome.exit_code}"


# The button under a failed job's report (and a failing `hw check`) that opens an
# incident about it; its value is "<job id>" or "<job id>:<xname>,<xname>..." (bot/incidents.py).
OPEN_INCIDENT_ACTION = "incident_open"
SECTION_TEXT = 3000  # Slack's limit for a section's text


def open_incident_block(value: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": "incident-open",
        "elements": [
            {
                "type": "button",
                "action_id": OPEN_INCIDENT_ACTION,
                "text": {"type": "plain_text", "text": "Open an incident"},
                "value": value[:2000],
            }
        ],
    }


def failure_message(job: Job, outcome: Outcome, problem: str | None = None) -> Message:
    """Job id, why it ended, the end of stderr, and how to read the logs."""
    who = f"Job #{job.id} {_label(job)}" if _queued(job) else f"Command {_label(job)}"
    lines = [f"{who} {problem or _why(job, outcome)}."]
    if outcome.note:
        lines.append(outcome.note[0].upper() + outcome.note[1:] + ".")
    if outcome.stderr_tail.strip():
        lines.append(f"Last lines of stderr:\n```\n{outcome.stderr_tail}\n```")
    if outcome.log_dir and not _queued(job):
        lines.append(f"Logs: stdout and stderr in {outcome.log_dir}")
    elif outcome.log_dir:
        lines.append(
            f"Logs: `@stat-bot logs {job.id} stderr` in chat, or `stat-bot logs {job.id} stderr` "
            f"on the server (folder {outcome.log_dir})"
        )
    text = "\n".join(lines)
    if not _queued(job):
        return Message(text)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}}
        for part in split_text(text, SECTION_TEXT)
    ]
    return Message(text, [*blocks, open_incident_block(str(job.id))])


def _destination(job: Job, spec: JobSpec | None) -> dict[str, Any]:
    """Where a job's reports go: its own channel and thread, else its job's report_channel."""
    return {
        "channel": job.channel or (spec.report_channel if spec else None),
        "thread_ts": job.thread_ts,
        "job_id": job.id,
        "is_im": job.is_im,
        "title": f"#{job.id} {job.namespace} {job.job_type}",
    }


def requeued_report(job: Job, spec: JobSpec | None) -> Report:
    """Word that a job lost with its dispatcher will run again (its retries allow it)."""
    text = f"Job #{job.id} {_label(job)}: its dispatcher stopped while it ran; {job.note}."
    return Report([Message(text)], "info", **_destination(job, spec))


def confirmed_by_text(job: Job) -> str:
    """Who confirmed a guarded job: a Slack id as a mention, a name as @name."""
    by = escape_mrkdwn(job.confirmed_by or "")
    if by.isalnum() and by.isupper() and by.startswith(("U", "W")):
        return f"<@{by}>"
    return by if by.startswith(("@", "cli:")) else f"@{by}"


def _with_confirmer(report: Report | None, job: Job) -> Report | None:
    """A guarded job's report says who confirmed it, at its end (a context line in blocks)."""
    if report is None or not job.confirmed_by:
        return report
    line = f"Confirmed by {confirmed_by_text(job)}."
    messages = list(report.messages)
    last = messages[-1]
    if last.file is not None:
        messages.append(Message(line))
    elif last.blocks is not None and len(last.blocks) < MAX_BLOCKS:
        context = {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}
        messages[-1] = dataclasses.replace(last, blocks=[*last.blocks, context])
    elif last.blocks is None and len(last.text) + len(line) < MAX_TEXT:
        messages[-1] = dataclasses.replace(last, text=f"{last.text}\n_{line}_")
    else:
        messages.append(Message(line))
    return dataclasses.replace(report, messages=messages)


def build_report(job: Job, spec: JobSpec | None, outcome: Outcome) -> Report | None:
    """The report for a finished job, or None when its config asks for silence."""
    return _with_confirmer(_build_report(job, spec, outcome), job)


def _build_report(job: Job, spec: JobSpec | None, outcome: Outcome) -> Report | None:
    destination = _destination(job, spec)
    if outcome.status is JobStatus.SUCCEEDED and spec is not None:
        messages = success_messages(job, spec, outcome.stdout)
        if isinstance(messages, str):
            return Report(
                [failure_message(job, outcome, f"succeeded, but {messages}")],
                "failure",
                **destination,
            )
        return Report(messages, "success", **destination) if messages else None
    if outcome.status is JobStatus.CANCELLED:
        return Report(
            [Message(f"Job #{job.id} {_label(job)} was cancelled.")], "info", **destination
        )
    return Report([failure_message(job, outcome)], "failure", **destination)


def build_reports(
    job: Job,
    spec: JobSpec | None,
    outcome: Outcome,
    requesters: Sequence[JobRequester] = (),
    *,
    replaces_progress: bool = False,
) -> list[Report]:
    """A finished job's report for its requester and a copy for each one merged into it.

    Each copy goes to its requester's own channel and thread (else the job's
    report_channel); a destination already answered gets nothing twice. When a merge
    replaced the job's arguments (coalesce "type"), every report says what it ran with.
    Empty when the config asks for silence.
    """
    report = build_report(job, spec, outcome)
    if report is None:
        return []
    return to_requesters(report, job, spec, requesters, replaces_progress=replaces_progress)


def to_requesters(
    report: Report,
    job: Job,
    spec: JobSpec | None,
    requesters: Sequence[JobRequester],
    *,
    replaces_progress: bool = False,
) -> list[Report]:
    """`report` (the job's own) followed by a copy for each requester merged into the job.

    `replaces_progress`: the job has a progress message, which its own report replaces;
    the copies, in other threads, never do.
    """
    if any(r.replaced_args for r in requesters):
        note = Message(merged_args_note(job, len(requesters) + 1))
        report = dataclasses.replace(report, messages=[note, *report.messages])
    copied = _copied_messages(report, job) if requesters else report.messages
    meta = {**report.meta, "copy": True}
    if replaces_progress:
        report = dataclasses.replace(report, meta={**report.meta, "replaces_progress": True})
    reports = [report]
    answered = {(report.channel, report.thread_ts)}
    for requester in requesters:
        channel = requester.channel or (spec.report_channel if spec else None)
        if (channel, requester.thread_ts) in answered:
            continue
        answered.add((channel, requester.thread_ts))
        reports.append(
            dataclasses.replace(
                report,
                messages=copied,
                channel=channel,
                thread_ts=requester.thread_ts,
                is_im=requester.is_im,
                requester=requester,
                # Carried by the outbox, where `requester` is not: a copy replaces no
                # progress message and is not reposted to tech support.
                meta=meta,
            )
        )
    return reports


def _copied_messages(report: Report, job: Job) -> list[Message]:
    """What a merged requester's copy says: the report, or a pointer when it is large."""
    size = sum(
        len(m.text) + (len(m.file.content) if m.file else 0) + len(str(m.blocks or ""))
        for m in report.messages
    )
    if size <= MAX_COPY_BYTES:
        return report.messages
    how = "finished" if report.kind == "success" else "ended"
    return [
        Message(
            f"Job #{job.id} {_label(job)} {how}; its output ({size:,} bytes) went to the "
            f"first request's thread. `@stat-bot logs {job.id}` shows it here."
        )
    ]


def _args_text(args: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in args.items()) or "no arguments"


def merged_args_note(job: Job, asked: int) -> str:
    """Why someone may get the answer to other arguments than theirs (coalesce "type")."""
    return (
        f"Job #{job.id} {_label(job)} answers {asked} requests merged into it, and ran with "
        f"the arguments asked for last: {escape_mrkdwn(_args_text(job.args))}."
    )


def _asker(job: Job) -> str:
    """Who a job is queued for, for people to read, without pinging them."""
    if job.user_name:
        return f"@{job.user_name}"
    if job.user:
        return job.user
    return {"schedule": "a schedule", "webhook": "a webhook", "cli": "the command line"}.get(
        job.source, job.source
    )


def joined_text(job: Job, *, by_type: bool, in_thread: bool) -> str:
    """The answer to a request merged into a queued job: which job, and for whom.

    `by_type` (coalesce "type"): the job now runs with this request's arguments.
    `in_thread`: the requester has a thread of their own, where its result will go.
    """
    parts = [f"Joined job #{job.id} {_label(job)}, already queued for {escape_mrkdwn(_asker(job))}"]
    if by_type:
        parts.append(
            "it now runs with the latest arguments asked for "
            f"({escape_mrkdwn(_args_text(job.args))}), and everyone who asked gets its result"
        )
    if in_thread:
        parts.append("its result comes to this thread too")
    return "; ".join(parts)


def start_notice(job: Job, channel: str) -> Report:
    """The logs channel's line for a job whose process has started."""
    who = f" for <@{job.user}>" if job.user and job.user.startswith(("U", "W")) else ""
    # Args may come from outside (a Trac summary, a branch name): escaped, so they can
    # neither ping the channel nor fake a link.
    args = escape_mrkdwn(" ".join(f"{k}={v}" for k, v in job.args.items()))
    if job.confirmed_by:
        who += f", confirmed by {confirmed_by_text(job)}"
    text = f"Job #{job.id} {_label(job)}{' ' + args if args else ''} started ({job.source}{who})."
    return Report(
        [Message(text)],
        "info",
        channel=channel,
        job_id=job.id,
        title=f"#{job.id} {job.namespace} {job.job_type} started",
        meta={"start": True},
    )


def progress_report(job: Job, elapsed: float, output_tail: str) -> Report:
    """The one message in a long job's thread, edited as it runs and replaced by its report."""
    took = f"{elapsed:.0f} s" if elapsed < 120 else f"{elapsed / 60:.1f} min"
    lines = [f":hourglass_flowing_sand: Job #{job.id} {_label(job)} has been running for {took}."]
    if output_tail.strip():
        lines.append(f"Latest output:\n```\n{output_tail[-2500:]}\n```")
    return Report(
        [Message("\n".join(lines))],
        "info",
        channel=job.channel,
        thread_ts=job.thread_ts,
        job_id=job.id,
        title=f"#{job.id} {job.namespace} {job.job_type} progress",
        meta={"progress": True},
    )
