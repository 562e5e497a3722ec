"""What STAT bot may run: namespaces, their jobs, chat commands and schedules.

The format is ebmbot's `raw_config` (see README, "Configuring jobs"), with optional
extensions: per job `timeout`, `concurrency`, `coalesce`, `retries`,
`report_channel`; per namespace `default_channel`, `schedules` and `webhooks`; typed
placeholders such as `[count:int]`, `[interval:1h|2h|5h|1d]`, `[name=world]`,
`[node:xname]` and `[text...]` (the rest of the line).

Check a change with `stat-bot check-config` before restarting the service.
"""

raw_config = {
    "system": {
        "description": "Examples about the machine STAT bot runs on",
        "jobs": {
            "hello": {
                "run_args_template": "echo Hello {name}",
                "report_stdout": True,
                "timeout": 10,
            },
            "uptime": {
                "run_args_template": "uptime",
                "report_stdout": True,
                "timeout": 10,
            },
            "disk": {
                "run_args_template": "bash disk.sh",
                "report_stdout": True,
                "report_format": "code",
                "timeout": 60,
            },
            "summary": {
                "run_args_template": "python3 summary.py",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 60,
            },
        },
        "slack": [
            {
                "command": "hello [name=world]",
                "help": "Say hello to [name]",
                "action": "schedule_job",
                "job_type": "hello",
            },
            {
                "command": "uptime",
                "help": "How long this machine has been up, and its load",
                "action": "schedule_job",
                "job_type": "uptime",
            },
            {
                "command": "disk",
                "help": "Free space on the paths in SYSTEM_DISK_PATHS",
                "action": "schedule_job",
                "job_type": "disk",
            },
            {
                "command": "summary",
                "help": "Host, load, memory and disk as Block Kit fields",
                "action": "schedule_job",
                "job_type": "summary",
            },
        ],
        # A schedule enqueues a job with fixed args; cron in TIMEZONE, e.g.:
        # "schedules": [{"cron": "0 8 * * 1-5", "job_type": "disk", "channel": "#stat"}],
        # GitHub webhooks to POST /github/<namespace> queue jobs by rule (README, "GitHub
        # webhooks"); e.g. a pull request merged into the default branch deploys a minute
        # later, and a push to main builds that commit (with "build": "make build SHA={sha}"):
        # "webhooks": [
        #     {"event": "pull_request", "action": "closed", "merged": True,
        #      "branch": "default", "job_type": "deploy", "delay_seconds": 60},
        #     {"event": "push", "branch": "main", "job_type": "build", "args": {"sha": "{sha}"}},
        #     {"event": "release", "action": "published", "job_type": "release"},
        # ],
    },
}
