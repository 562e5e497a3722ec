"""Exclusive jobs on overlapping xnames never run at once; others run side by side.

Real dispatchers (two subprocesses), real jobs that stamp their start and end times
into a file: the stamps, not the queue's own records, show what ran when.
"""

from __future__ import annotations

from stat_bot.jobs.model import JobStatus, Source
from stat_bot.jobs.requests import build_request
from tests.integration.conftest import read_intervals, wait_status

STAMP = (
    ': {target}; echo "start {label}-$STAT_BOT_ARG_TARGET $STAT_BOT_JOB_ID $(date +%s.%N)" '
    '>> "$WRITEABLE_DIR/stamps"; sleep 1; '
    'echo "end {label}-$STAT_BOT_ARG_TARGET $STAT_BOT_JOB_ID $(date +%s.%N)" '
    '>> "$WRITEABLE_DIR/stamps"'
)


def job(label: str, **extra: object) -> dict[str, object]:
    return {
        "run_args_template": STAMP.replace("{label}", label),
        "concurrency": 8,
        "coalesce": False,
        "report_success": False,
        **extra,
    }


def meet(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (start, end) intervals share an instant."""
    return a[0] < b[1] and b[0] < a[1]


def test_overlapping_exclusive_jobs_wait_and_the_rest_run_beside_them(
    configure, queue, settings, start_dispatcher
):
    configs = configure(
        {
            "hw": {
                "jobs": {
                    "power": job("power", exclusive="target"),
                    "drain": job("drain", exclusive="target"),
                    "check": job("check"),
                }
            }
        }
    )
    namespace = configs.namespaces["hw"]
    asked = [
        ("power", "x1000c0"),  # the chassis: overlaps both of its nodes below
        ("drain", "x1000c0s0b0n0"),
        ("power", "x1000c0s1b0n0"),
        ("power", "x1000c1s0b0n0"),  # x1000c1 and x1000c10: no overlap (not a text prefix)
        ("drain", "x1000c10s0b0n0"),
        ("check", "x1000c0"),  # not exclusive: runs beside the chassis' power job
    ]
    ids = [
        queue.enqueue(
            build_request(namespace, job_type, source=Source.CLI, args={"target": target})
        ).job.id
        for job_type, target in asked
    ]
    start_dispatcher(DISPATCHER_CONCURRENCY="4")
    start_dispatcher(DISPATCHER_CONCURRENCY="4")
    for job_id in ids:
        wait_status(queue, job_id, JobStatus.SUCCEEDED, timeout=60)
    stamps = read_intervals(settings.writeable_dir / "stamps")
    (chassis,) = stamps["power-x1000c0"]
    (node0,) = stamps["drain-x1000c0s0b0n0"]
    (node1,) = stamps["power-x1000c0s1b0n0"]
    (c1,) = stamps["power-x1000c1s0b0n0"]
    (c10,) = stamps["drain-x1000c10s0b0n0"]
    (check,) = stamps["check-x1000c0"]
    # Overlapping targets: one after the other, never at the same time.
    assert not meet(chassis, node0)
    assert not meet(chassis, node1)
    # Targets that do not overlap ran at the same time (both waited only for the chassis,
    # or for nothing at all), and a check ran beside the exclusive job on its chassis.
    assert meet(node0, node1)
    assert meet(c1, c10)
    assert meet(check, chassis)
