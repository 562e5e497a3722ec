"""A finished job's outcome -> the messages that report it, and how notifiers show them."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stat_bot.jobs.config import JobSpec
from stat_bot.jobs.model import JobRequester, JobStatus
from stat_bot.report.messages import (
    MAX_BLOCKS,
    MAX_TEXT,
    MAX_TEXT_PARTS,
    FileUpload,
    Message,
    Outcome,
    Report,
    build_report,
    build_reports,
    joined_text,
    split_text,
    start_notice,
    success_messages,
    tail,
    to_requesters,
)
from stat_bot.report.notifiers import ConsoleNotifier, DeliveryError, RecordingNotifier
from tests.unit.helpers import make_job


def spec(**values) -> JobSpec:
    return JobSpec(run_args_template="echo", **values)


def succeeded(stdout: str = "") -> Outcome:
    return Outcome(JobStatus.SUCCEEDED, exit_code=0, stdout=stdout, log_dir="/var/logs/42")


JOB = make_job()


# --- success, following ebmbot's report_success / report_stdout -----------------------


def test_success_without_stdout_says_succeeded():
    report = build_report(JOB, spec(), succeeded("ignored output"))
    assert report is not None
    assert report.kind == "success"
    assert [m.text for m in report.messages] == ["Command `example hello` succeeded (job #42)."]


def test_silent_when_neither_success_nor_stdout_is_reported():
    assert build_report(JOB, spec(report_success=False), succeeded("output")) is None


def test_stdout_is_reported_even_when_success_is_not():
    report = build_report(JOB, spec(report_stdout=True, report_success=False), succeeded("Hello\n"))
    assert report is not None
    assert [m.text for m in report.messages] == ["Hello"]


@pytest.mark.parametrize("stdout", ["", "\n", "   \n\t"])
def test_empty_stdout_says_no_output(stdout):
    report = build_report(JOB, spec(report_stdout=True), succeeded(stdout))
    assert report is not None
    assert [m.text for m in report.messages] == [
        "No output found for command `example hello` (job #42)."
    ]


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(JobStatus.FAILED, exit_code=1),
        Outcome(JobStatus.TIMED_OUT, exit_code=-9, timeout=5),
        Outcome(JobStatus.LOST),
    ],
)
def test_failures_are_always_reported(outcome):
    report = build_report(JOB, spec(report_success=False, report_stdout=False), outcome)
    assert report is not None
    assert report.kind == "failure"


def test_report_goes_to_the_jobs_channel_and_thread():
    job = make_job(channel="C9", thread_ts="111.222", is_im=True)
    report = build_report(job, spec(report_channel="C_DEFAULT"), succeeded())
    assert report is not None
    assert (report.channel, report.thread_ts, report.job_id, report.is_im) == (
        "C9",
        "111.222",
        42,
        True,
    )
    assert report.title == "#42 example hello"


def test_report_channel_is_the_fallback():
    job = make_job(channel=None)
    report = build_report(job, spec(report_channel="C_DEFAULT"), succeeded())
    assert report is not None
    assert report.channel == "C_DEFAULT"


# --- text ------------------------------------------------------------------------------


def test_text_is_posted_without_its_final_newline():
    messages = success_messages(JOB, spec(report_stdout=True), "line one\nline two\n")
    assert messages == [Message("line one\nline two")]


def test_long_text_is_split_on_line_boundaries():
    lines = [f"line {i:05d} " + "x" * 60 for i in range(200)]
    stdout = "\n".join(lines) + "\n"
    messages = success_messages(JOB, spec(report_stdout=True), stdout)
    assert isinstance(messages, list)
    assert len(messages) > 1
    assert all(len(m.text) <= MAX_TEXT for m in messages)
    # Nothing lost, nothing cut mid-line.
    assert [line for m in messages for line in m.text.split("\n")] == lines


def test_a_line_longer_than_a_message_is_cut_at_the_limit():
    stdout = "y" * (MAX_TEXT * 2 + 10)
    pieces = split_text(stdout)
    assert [len(p) for p in pieces] == [MAX_TEXT, MAX_TEXT, 10]
    assert "".join(pieces) == stdout


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.text(st.characters(exclude_characters="\n"), max_size=30), max_size=40),
    limit=st.integers(min_value=31, max_value=200),
)
def test_split_text_keeps_every_line_whole(lines, limit):
    text = "\n".join(lines)
    pieces = split_text(text, limit)
    assert all(len(p) <= limit for p in pieces)
    assert "\n".join(pieces) == text


def test_split_text_of_empty_text_is_one_empty_piece():
    assert split_text("") == [""]


# --- blocks ----------------------------------------------------------------------------


def section(i: int) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": f"block {i}"}}


def test_blocks_are_parsed():
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": "Nodes"}}, section(1)]
    messages = success_messages(
        JOB, spec(report_stdout=True, report_format="blocks"), json.dumps(blocks)
    )
    assert messages == [Message("example hello report", blocks=blocks)]


@pytest.mark.parametrize(("count", "sizes"), [(50, [50]), (51, [50, 1]), (120, [50, 50, 20])])
def test_more_than_fifty_blocks_are_split(count, sizes):
    blocks = [section(i) for i in range(count)]
    messages = success_messages(
        JOB, spec(report_stdout=True, report_format="blocks"), json.dumps(blocks)
    )
    assert isinstance(messages, list)
    assert [len(m.blocks or []) for m in messages] == sizes
    assert all(len(m.blocks or []) <= MAX_BLOCKS for m in messages)
    assert [b for m in messages for b in m.blocks or []] == blocks


def test_invalid_block_json_is_a_failure_quoting_the_parse_error():
    report = build_report(
        JOB, spec(report_stdout=True, report_format="blocks"), succeeded('[{"type": "divider"},')
    )
    assert report is not None
    assert report.kind == "failure"
    (message,) = report.messages
    assert message.text.startswith(
        "Job #42 `example hello` succeeded, but its output is not valid JSON:"
    )
    assert "Expecting value: line 1 column 22 (char 21)" in message.text
    assert "stat-bot logs 42" in message.text


@pytest.mark.parametrize(
    "stdout", ['{"type": "divider"}', '"text"', "5", '[{"text": "no type"}]', "[1, 2]"]
)
def test_block_json_that_is_not_a_list_of_blocks_is_refused(stdout):
    report = build_report(JOB, spec(report_stdout=True, report_format="blocks"), succeeded(stdout))
    assert report is not None
    assert report.kind == "failure"
    assert "must be a JSON list of Block Kit blocks" in report.messages[0].text


def test_empty_block_list_is_refused():
    report = build_report(JOB, spec(report_stdout=True, report_format="blocks"), succeeded("[]"))
    assert report is not None
    assert report.kind == "failure"
    assert "empty list of blocks" in report.messages[0].text


# --- code and file ---------------------------------------------------------------------


def test_code_is_wrapped_in_backticks():
    messages = success_messages(JOB, spec(report_stdout=True, report_format="code"), "a  b\nc\n")
    assert messages == [Message("```\na  b\nc\n```")]


def test_code_at_the_limit_stays_a_message():
    body = "z" * (MAX_TEXT - 8)
    (message,) = success_messages(JOB, spec(report_stdout=True, report_format="code"), body)
    assert message.file is None
    assert len(message.text) == MAX_TEXT


def test_code_above_the_limit_becomes_a_file():
    body = "z" * (MAX_TEXT - 7)
    (message,) = success_messages(JOB, spec(report_stdout=True, report_format="code"), body)
    assert message.file == FileUpload("example-hello-42.txt", body.encode())
    assert f"{len(body):,} characters" in message.text
    assert "attached as a file" in message.text


def test_file_format_uploads_stdout():
    stdout = "col1,col2\n1,2\n\u00e9\n"
    (message,) = success_messages(JOB, spec(report_stdout=True, report_format="file"), stdout)
    assert message.file == FileUpload("example-hello-42.txt", stdout.encode())
    assert message.text == "Output of `example hello`"


# --- failures --------------------------------------------------------------------------


def test_failure_names_job_status_stderr_and_logs():
    outcome = Outcome(
        JobStatus.FAILED,
        exit_code=3,
        stderr_tail="Traceback...\nValueError: bad node",
        log_dir="/var/logs/42",
    )
    report = build_report(JOB, spec(), outcome)
    assert report is not None
    assert report.kind == "failure"
    (message,) = report.messages
    lines = message.text.split("\n")
    assert lines[0] == "Job #42 `example hello` failed with exit status 3."
    assert "Last lines of stderr:\n```\nTraceback...\nValueError: bad node\n```" in message.text
    assert "`@stat-bot logs 42 stderr` in chat" in message.text
    assert "`stat-bot logs 42 stderr` on the server" in message.text
    assert "/var/logs/42" in message.text


def test_timeout_is_named_with_its_limit():
    report = build_report(JOB, spec(), Outcome(JobStatus.TIMED_OUT, exit_code=-15, timeout=2.5))
    assert report is not None
    assert report.messages[0].text.startswith(
        "Job #42 `example hello` timed out after 2.5 s and was stopped."
    )


def test_timeout_without_a_known_limit():
    report = build_report(JOB, spec(), Outcome(JobStatus.TIMED_OUT, exit_code=-15))
    assert report is not None
    assert "timed out and was stopped" in report.messages[0].text


def test_killed_by_signal():
    report = build_report(JOB, spec(), Outcome(JobStatus.FAILED, exit_code=-9))
    assert report is not None
    assert report.messages[0].text.startswith("Job #42 `example hello` was killed by signal 9.")


def test_note_is_a_sentence_of_its_own():
    report = build_report(
        JOB,
        None,
        Outcome(JobStatus.FAILED, note="job type 'example hello' is no longer configured"),
    )
    assert report is not None
    assert "\nJob type 'example hello' is no longer configured.\n" in report.messages[0].text + "\n"


def test_no_stderr_section_when_stderr_is_empty():
    report = build_report(JOB, spec(), Outcome(JobStatus.FAILED, exit_code=1, stderr_tail="\n"))
    assert report is not None
    assert "stderr:" not in report.messages[0].text


def test_success_without_a_spec_is_reported_as_a_failure():
    # The job's type vanished from the config while it ran: say so rather than guess.
    report = build_report(JOB, None, Outcome(JobStatus.SUCCEEDED, exit_code=0))
    assert report is not None
    assert report.kind == "failure"


def test_cancelled_wording():
    report = build_report(JOB, spec(), Outcome(JobStatus.CANCELLED, exit_code=-15))
    assert report is not None
    assert report.kind == "info"
    assert [m.text for m in report.messages] == ["Job #42 `example hello` was cancelled."]


def test_lost_wording():
    report = build_report(
        JOB,
        spec(),
        Outcome(JobStatus.LOST, note="lost: dispatcher w1 stopped while it ran", log_dir="/l"),
    )
    assert report is not None
    assert report.kind == "failure"
    text = report.messages[0].text
    assert text.startswith("Job #42 `example hello` was lost: the dispatcher running it stopped.")
    assert "Lost: dispatcher w1 stopped while it ran." in text


def test_tail_keeps_the_last_lines_bounded():
    text = "\n".join(f"line {i}" for i in range(100)) + "\n"
    assert tail(text, lines=3) == "line 97\nline 98\nline 99"
    assert tail("x" * 5000, chars=100) == "x" * 100


# --- notifiers -------------------------------------------------------------------------


def console_text(report: Report, headers: bool = True) -> str:
    stream = io.StringIO()
    ConsoleNotifier(stream, headers=headers).deliver(report)
    return stream.getvalue()


def test_console_renders_blocks_readably():
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Node health"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*3* nodes\nall *fine*"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*Node*"},
                {"type": "mrkdwn", "text": "*State*"},
                {"type": "plain_text", "text": "x1000c0s0b0n0"},
                {"type": "plain_text", "text": "On"},
                {"type": "plain_text", "text": "x1000c0s0b0n1"},
            ],
        },
        {"type": "divider"},
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": "checked"},
                {"type": "plain_text", "text": "now"},
            ],
        },
        {"type": "image", "image_url": "https://e/x.png", "alt_text": "graph"},
        {"type": "mystery"},
    ]
    report = Report(
        [Message("fallback", blocks=blocks)], "success", channel="C1", title="#7 hw check"
    )
    lines = console_text(report).splitlines()
    assert lines[0] == "--- #7 hw check [success] -> C1 ---"
    assert lines[1:3] == ["NODE HEALTH", "=" * len("Node health")]
    assert lines[3:5] == ["*3* nodes", "all *fine*"]
    assert lines[5] == f"{'*Node*':<38}  *State*"
    assert lines[6] == f"{'x1000c0s0b0n0':<38}  On"
    assert lines[7] == "x1000c0s0b0n1"
    assert lines[8] == "-" * 40
    assert lines[9] == "  checked  now"
    assert lines[10] == "[image: graph]"
    assert lines[11] == "[mystery block]"
    assert "fallback" not in lines


def test_console_renders_code_and_files():
    report = Report(
        [
            Message("```\ncode here\n```"),
            Message("Output attached", file=FileUpload("out.txt", "r\u00e9sum\u00e9\n".encode())),
        ],
        "success",
        thread_ts="1.2",
        title="#3 ns job",
    )
    text = console_text(report)
    assert text == (
        "--- #3 ns job [success] (thread 1.2) ---\n"
        "```\ncode here\n```\n"
        "Output attached\n"
        "[file out.txt, 9 bytes]\n"
        "r\u00e9sum\u00e9\n"
    )


def test_console_without_headers():
    report = Report([Message("hello")], "info")
    assert console_text(report, headers=False) == "hello\n"


def test_recording_notifier_records_in_order():
    notifier = RecordingNotifier()
    first = Report([Message("one")], job_id=1)
    second = Report([Message("two")], job_id=2)
    notifier.deliver(first)
    notifier.deliver(second)
    assert notifier.reports == [first, second]
    assert notifier.wait_for(2, timeout=0.1) == [first, second]


def test_recording_notifier_wait_for_returns_what_arrived_by_the_timeout():
    notifier = RecordingNotifier()
    notifier.deliver(Report([Message("one")]))
    assert len(notifier.wait_for(3, timeout=0.05)) == 1


def test_recording_notifier_can_fail():
    notifier = RecordingNotifier()
    notifier.fail_with = "channel_not_found"
    with pytest.raises(DeliveryError, match="channel_not_found"):
        notifier.deliver(Report([Message("lost")]))
    assert notifier.reports == []
    notifier.fail_with = None
    notifier.deliver(Report([Message("ok")]))
    assert len(notifier.reports) == 1


# --- one report per requester of a merged job ---------------------------------------------


def requester(channel: str | None, thread_ts: str | None, **values) -> JobRequester:
    fields = {
        "job_id": 42, "user": "U2", "user_name": "bob", "is_im": False, "source": "slack",
        "args": {}, "replaced_args": False, "created_at": 1000.5,
    }  # fmt: skip
    fields.update(values)
    return JobRequester(channel=channel, thread_ts=thread_ts, **fields)


def test_every_merged_requester_gets_the_report_in_their_own_thread():
    job = make_job(channel="C1", thread_ts="1.0")
    merged = [requester("C2", "2.0"), requester("D3", "3.0", is_im=True)]
    reports = build_reports(job, spec(report_stdout=True), succeeded("Hello Ada\n"), merged)
    assert [(r.channel, r.thread_ts, r.is_im) for r in reports] == [
        ("C1", "1.0", False),
        ("C2", "2.0", False),
        ("D3", "3.0", True),
    ]
    assert [[m.text for m in r.messages] for r in reports] == [["Hello Ada"]] * 3
    assert {r.job_id for r in reports} == {42}
    assert [r.requester for r in reports] == [None, *merged]


def test_a_requester_without_a_channel_gets_the_report_channel_once():
    job = make_job(channel=None, thread_ts=None)
    merged = [requester(None, None, source="cli"), requester("#ops", None, source="schedule")]
    reports = build_reports(job, spec(report_channel="#ops"), succeeded(), merged)
    # The CLI requester's place is the job's own (report_channel): answered once.
    assert [(r.channel, r.thread_ts) for r in reports] == [("#ops", None)]


def test_a_silent_job_is_silent_for_every_requester():
    merged = [requester("C2", "2.0")]
    assert build_reports(make_job(), spec(report_success=False), succeeded(), merged) == []


def test_a_failure_reaches_every_requester():
    job = make_job(channel="C1", thread_ts="1.0")
    outcome = Outcome(JobStatus.FAILED, exit_code=3, stderr_tail="broken disk")
    reports = build_reports(job, spec(), outcome, [requester("C2", "2.0")])
    assert [r.kind for r in reports] == ["failure", "failure"]
    assert all("failed with exit status 3" in r.messages[0].text for r in reports)


def test_when_a_merge_replaced_the_arguments_every_report_says_what_ran():
    job = make_job(channel="C1", thread_ts="1.0", job_type="ticket", args={"number": "7"})
    merged = [requester("C2", "2.0", args={"number": "7"}, replaced_args=True)]
    reports = build_reports(job, spec(report_stdout=True), succeeded("ticket 7\n"), merged)
    note = (
        "Job #42 `example ticket` answers 2 requests merged into it, and ran with the "
        "arguments asked for last: number=7."
    )
    assert [[m.text for m in r.messages] for r in reports] == [[note, "ticket 7"]] * 2
    # Without a replacement there is nothing to explain.
    same = [requester("C2", "2.0", args={"number": "7"})]
    plain = build_reports(job, spec(report_stdout=True), succeeded("ticket 7\n"), same)
    assert [[m.text for m in r.messages] for r in plain] == [["ticket 7"]] * 2


def test_the_joined_answer_names_the_job_and_whom_it_is_queued_for():
    job = make_job(status=JobStatus.QUEUED, user_name="ada", args={"name": "Zed"})
    assert joined_text(job, by_type=False, in_thread=True) == (
        "Joined job #42 `example hello`, already queued for @ada; "
        "its result comes to this thread too"
    )
    assert joined_text(job, by_type=True, in_thread=False) == (
        "Joined job #42 `example hello`, already queued for @ada; it now runs with the latest "
        "arguments asked for (name=Zed), and everyone who asked gets its result"
    )
    scheduled = make_job(status=JobStatus.QUEUED, user=None, source="schedule")
    assert "already queued for a schedule" in joined_text(scheduled, by_type=False, in_thread=False)


# --- what goes out through the outbox: copies, size, escaping ------------------------------


def test_a_copy_never_replaces_the_jobs_progress_message():
    job = make_job(channel="C1", thread_ts="1.0")
    own = build_report(job, spec(report_stdout=True), succeeded("done\n"))
    assert own is not None
    # The job ran long enough to have one.
    reports = to_requesters(
        own, job, spec(report_stdout=True), [requester("C2", "2.0")], replaces_progress=True
    )
    assert reports[0].meta == {"replaces_progress": True}
    assert reports[1].meta == {"copy": True}


def test_a_long_text_report_goes_up_as_a_file_not_a_wall_of_messages():
    job = make_job()
    out = "".join(f"line {i:06d} " + "x" * 90 + "\n" for i in range(300))  # ~30 kB
    few = success_messages(job, spec(report_stdout=True), out[:12_000])
    assert isinstance(few, list)
    assert 1 < len(few) <= MAX_TEXT_PARTS
    assert all(m.file is None for m in few)
    (attached,) = success_messages(job, spec(report_stdout=True), out)
    assert attached.file is not None
    assert attached.file.content == out.encode()
    assert "attached as a file" in attached.text


def test_a_copy_of_a_large_report_points_to_it_instead_of_repeating_it():
    job = make_job(channel="C1", thread_ts="1.0")
    big = build_report(
        job, spec(report_stdout=True, report_format="file"), succeeded("y" * 200_000)
    )
    assert big is not None
    own, copy = to_requesters(big, job, spec(), [requester("C2", "2.0")])
    assert own.messages == big.messages
    (pointer,) = copy.messages
    assert pointer.file is None
    assert f"`@stat-bot logs {job.id}`" in pointer.text
    small = build_report(job, spec(report_stdout=True), succeeded("tiny\n"))
    assert small is not None
    assert to_requesters(small, job, spec(), [requester("C2", "2.0")])[1].messages == small.messages


def test_outside_text_in_start_notices_and_github_notices_is_escaped():
    job = make_job(args={"summary": "<!channel> see <https://evil|docs> & more"})
    (message,) = start_notice(job, "stat-bot-logs").messages
    assert "<!channel>" not in message.text
    assert "&lt;!channel&gt; see &lt;https://evil|docs&gt; &amp; more" in message.text
