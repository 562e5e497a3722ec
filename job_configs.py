"""What STAT bot may run: namespaces, their jobs, chat commands and schedules.

The format is ebmbot's `raw_config` (see README, "Configuring jobs"), with optional
extensions: per job `timeout`, `concurrency`, `coalesce`, `retries`,
`report_channel`; per namespace `default_channel`, `schedules`, `webhooks`,
`trac_rules` and `alert_rules`; typed placeholders such as `[count:int]`, `[interval:1h|2h|5h|1d]`,
`[name=world]`, `[node:xname]`, `[target:target]` and `[text...]` (the rest of the line).

Guarded jobs (README, "Guarded jobs"): per job `confirm` (text of what will happen,
with the job's {args}: "Power {action} {target}"; a command is answered with
Confirm/Cancel buttons and the job queued only once confirmed), `confirm_by` (user
ids and @groups who may confirm besides the requester; default: the namespace's
`allowed_users`) and `exclusive` (the arg holding the target: two exclusive jobs on
overlapping xnames never run at once; write its placeholder as [target:target]).

Check a change with `stat-bot check-config`; the running service loads it again by
itself when the file changes, keeping the last good version if it does not load.
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
        # Trac ticket events (the plugin in contrib/trac/ POSTs them to /trac) queue jobs
        # by rule (README, "Trac notifications"); every namespace's rules see every event.
        # `when` tests the ticket's fields: True = not empty, text = glob (case ignored).
        # E.g. in a hardware namespace with "check": "python3 check.py {node}", a new
        # ticket with an xname checks that component, and closing one checks it again:
        # "trac_rules": [
        #     {"event": "created", "when": {"xname": True}, "job_type": "check",
        #      "args": {"node": "{xname}"}},
        #     {"event": "changed", "changed": ["status"], "when": {"status": "closed",
        #      "xname": "x*"}, "job_type": "check", "args": {"node": "{xname}"},
        #      "delay_seconds": 60},
        # ],
    },
    "trac": {
        "description": "Tickets in the site's Trac (STAT): list, read, open, comment, close",
        # The scripts read TRAC_URL, TRAC_USER, TRAC_PASSWORD (or TRAC_PASSWORD_FILE) and
        # TRAC_TIMEOUT; changes are made by that account and signed "via STAT bot for ...".
        # Every command is its own job with coalesce off: two people asking about two
        # tickets get two answers, and no comment replaces another one still queued.
        "jobs": {
            "active": {
                "run_args_template": "python3 trac_cmd.py active",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 60,
                "concurrency": 4,
                "coalesce": False,
            },
            # The scheduled report: as `active`, but silent (no output, report_success off)
            # when nothing is active and TRAC_REPORT_WHEN_EMPTY=false.
            "active-report": {
                "run_args_template": "python3 trac_cmd.py active-report",
                "report_stdout": True,
                "report_success": False,
                "report_format": "blocks",
                "timeout": 120,
            },
            "ticket": {
                "run_args_template": "python3 trac_cmd.py ticket {id}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 60,
                "concurrency": 4,
                "coalesce": False,
            },
            "xname": {
                "run_args_template": "python3 trac_cmd.py xname {xname}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 60,
                "concurrency": 4,
                "coalesce": False,
            },
            "owner": {
                "run_args_template": "python3 trac_cmd.py owner {user}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 60,
                "concurrency": 4,
                "coalesce": False,
            },
            "search": {
                "run_args_template": "python3 trac_cmd.py search {text}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 60,
                "concurrency": 4,
                "coalesce": False,
            },
            "new": {
                "run_args_template": "python3 trac_cmd.py new {type} {priority} {xname} {summary}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 60,
                "concurrency": 2,
                "coalesce": False,
            },
            "comment": {
                "run_args_template": "python3 trac_cmd.py comment {id} {text}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 60,
                "concurrency": 2,
                "coalesce": False,
            },
            "close": {
                "run_args_template": "python3 trac_cmd.py close {id} {resolution}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 60,
                "concurrency": 2,
                "coalesce": False,
            },
            "assign": {
                "run_args_template": "python3 trac_cmd.py assign {id} {user}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 60,
                "concurrency": 2,
                "coalesce": False,
            },
        },
        "slack": [
            {
                "command": "active",
                "help": "Active tickets: counts by priority and type, then each ticket",
                "action": "schedule_job",
                "job_type": "active",
            },
            {
                "command": "ticket [id:int]",
                "help": "Ticket [id]: its fields, description and last comments",
                "action": "schedule_job",
                "job_type": "ticket",
            },
            {
                "command": "xname [xname:xname]",
                "help": "Open and recently closed tickets for [xname] and everything below it",
                "action": "schedule_job",
                "job_type": "xname",
            },
            {
                "command": "owner [user]",
                "help": "Open tickets owned by the Trac user [user]",
                "action": "schedule_job",
                "job_type": "owner",
            },
            {
                "command": "search [text...]",
                "help": "Tickets with [text] in their summary, description or xname",
                "action": "schedule_job",
                "job_type": "search",
            },
            {
                "command": "new [type] [priority] [xname:xname] [summary...]",
                "help": "Open a ticket, e.g. `trac new defect major x1000c0s0b0n0 Fan failure`",
                "action": "schedule_job",
                "job_type": "new",
            },
            {
                "command": "comment [id:int] [text...]",
                "help": "Add a comment to ticket [id]",
                "action": "schedule_job",
                "job_type": "comment",
            },
            {
                "command": "close [id:int] [resolution=fixed]",
                "help": "Close ticket [id] as [resolution] (fixed, invalid, wontfix, duplicate, worksforme)",
                "action": "schedule_job",
                "job_type": "close",
            },
            {
                "command": "assign [id:int] [user]",
                "help": "Give ticket [id] to the Trac user [user]",
                "action": "schedule_job",
                "job_type": "assign",
            },
        ],
        "schedules": [
            # HPC-STAT's ActiveTicketsBot: hourly; /set-interval and the dashboard change the
            # interval of this schedule (ACTIVE_TICKETS_SCHEDULE=trac.active-tickets). With
            # no "channel" here it posts to STAT_CHANNEL, where ticket notices go too.
            # Without TRAC_URL it does not fire at all (no job, no history row).
            {
                "cron": "0 * * * *",
                "job_type": "active-report",
                "name": "active-tickets",
                "requires": ["TRAC_URL"],
            },
        ],
    },
    # Incident jobs (README, "Incidents"): started by the incident commands themselves, not
    # typed. The snapshot is posted into a new incident's channel; the postmortem draft
    # goes to the Trac wiki (TRAC_URL) when it is resolved; archive runs
    # INCIDENT_ARCHIVE_AFTER seconds later. Each is a built-in task.
    "incidents": {
        "description": "Jobs the incident commands start: snapshot, postmortem, archive",
        "jobs": {
            "snapshot": {
                "run_args_template": "stat-bot task incident-snapshot {incident}",
                "report_stdout": True,
                "timeout": 120,
                "concurrency": 2,
                "coalesce": True,
            },
            "postmortem": {
                "run_args_template": "stat-bot task incident-postmortem {incident}",
                "report_stdout": False,
                "report_success": False,  # the task posts the page's link itself
                "timeout": 300,
                "concurrency": 2,
                "coalesce": True,
                "retries": 5,
            },
            "archive": {
                "run_args_template": "stat-bot task incident-archive {incident}",
                "report_stdout": False,
                "report_success": False,
                "timeout": 120,
                "concurrency": 2,
                "coalesce": True,
            },
        },
        "slack": [],
    },
    # On-call (README, "Runbooks" and "Weekly handoff"): the runbook index is a built-in
    # task, re-read on a schedule (pages whose content did not change are not parsed
    # again); an alert that fires gets the best-matching runbook section in its thread.
    # The weekly handoff is a built-in task too, posted (and mailed) on Monday mornings.
    "oncall": {
        "description": "On-call: the runbook index and the weekly handoff",
        "jobs": {
            "runbook-index": {
                "run_args_template": "stat-bot task runbook-index",
                "report_stdout": True,
                "timeout": 1800,
                "coalesce": "type",
            },
            # `@stat-bot oncall handoff`: the summary answers the asker; mailed too when
            # SMTP_HOST and HANDOFF_MAIL_TO are set.
            "handoff": {
                "run_args_template": "stat-bot task oncall-handoff",
                "report_stdout": True,
                "timeout": 300,
                "concurrency": 1,
                "coalesce": True,
            },
            # The schedule's: posted to HANDOFF_CHANNEL (default ONCALL_CHANNEL) by the task.
            "handoff-weekly": {
                "run_args_template": "stat-bot task oncall-handoff --post",
                "report_stdout": False,
                "report_success": False,
                "timeout": 300,
                "concurrency": 1,
                "coalesce": True,
                # No retries: a retry after a failed mail would post the summary twice.
            },
        },
        "slack": [
            {
                "command": "runbook-index",
                "help": "Read the runbook sources (sites, Trac wiki, runbooks/) again now",
                "action": "schedule_job",
                "job_type": "runbook-index",
            },
            {
                "command": "handoff",
                "help": "The on-call week's summary now (alerts, incidents, failed jobs, Trac, sweep)",
                "action": "schedule_job",
                "job_type": "handoff",
            },
        ],
        "schedules": [
            {"cron": "17 * * * *", "job_type": "runbook-index", "name": "runbook-index"},
            # Monday 09:00 in TIMEZONE; not without ONCALL_CHANNEL (nowhere to post).
            {
                "cron": "0 9 * * 1",
                "job_type": "handoff-weekly",
                "name": "weekly-handoff",
                "requires": ["ONCALL_CHANNEL"],
            },
        ],
    },
    "hw": {
        "description": "Node health over Redfish and SSH by xname: show, check, sweep, power, drain",
        # Nodes come from HW_INVENTORY (CSV or YAML: xname,bmc,hostname,nid,system); BMCs are
        # asked with REDFISH_USERNAME and REDFISH_PASSWORD (or REDFISH_PASSWORD_FILE), at most
        # HW_FANOUT at once, REDFISH_TIMEOUT seconds a request. show, check and sweep are
        # built-in tasks (they keep each node's latest health and the sweeps in STAT bot's
        # database); inventory, firmware, sel and power are workspace/hw/hw.py. A [target] is
        # an xname (x1000c0s0b0n0), a partial one (x1000c0: everything below), a range
        # (x1000c0s[0-3]b0n0), a comma list, a hostname or nids (nid[000001-000004]).
        "jobs": {
            "show": {
                "run_args_template": "stat-bot task hw-show {target}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 60,
                "concurrency": 4,
                "coalesce": True,
            },
            "check": {
                "run_args_template": "stat-bot task hw-check {target}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 600,
                "concurrency": 4,
                "coalesce": True,
            },
            # As `check` for a whole scope, kept so the next sweep of it reports what changed.
            # Scheduled, it is silent (no output, report_success off) when nothing did and
            # HW_SWEEP_REPORT_UNCHANGED is false; asked for in chat, it always answers.
            "sweep": {
                "run_args_template": "stat-bot task hw-sweep {target}",
                "report_stdout": True,
                "report_success": False,
                "report_format": "blocks",
                "timeout": 1800,
                "concurrency": 1,
                "coalesce": True,
            },
            "inventory": {
                "run_args_template": "python3 hw.py inventory {target}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 600,
                "concurrency": 2,
                "coalesce": True,
            },
            "firmware": {
                "run_args_template": "python3 hw.py firmware {target}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 600,
                "concurrency": 2,
                "coalesce": True,
            },
            "sel": {
                "run_args_template": "python3 hw.py sel {target} {count}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 300,
                "concurrency": 2,
                "coalesce": True,
            },
            # Changes hardware state: every request is its own job (no merging), offered
            # with a Confirm button first, and never run beside another action on an
            # overlapping part of the machine (README, "Guarded jobs").
            "power": {
                "run_args_template": "python3 hw.py power {target} {action}",
                "confirm": "Power {action} {target}",
                "exclusive": "target",
                "confirm_by": ["@hpc-admins"],
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 300,
                "concurrency": 2,
                "coalesce": False,
            },
            # Only reads the power state: no confirmation, no lock.
            "power-status": {
                "run_args_template": "python3 hw.py power {target} status",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 300,
                "concurrency": 2,
                "coalesce": True,
            },
            # --- Slurm actions and closing the loop (slurm_cmd.py reads HW_INVENTORY,
            # SLURM_SCONTROL (default scontrol) and SLURM_CONF) ---
            "drain": {
                "run_args_template": "python3 slurm_cmd.py drain {target} {reason}",
                "confirm": "Drain {target} in Slurm ({reason})",
                "exclusive": "target",
                "confirm_by": ["@hpc-admins"],
                "report_stdout": True,
                "timeout": 120,
                "coalesce": False,
            },
            "resume": {
                "run_args_template": "python3 slurm_cmd.py resume {target}",
                "confirm": "Resume {target} in Slurm",
                "exclusive": "target",
                "confirm_by": ["@hpc-admins"],
                "report_stdout": True,
                "timeout": 120,
                "coalesce": False,
            },
            "slurm": {
                "run_args_template": "python3 slurm_cmd.py state {target}",
                "report_stdout": True,
                "timeout": 60,
                "concurrency": 4,
            },
            # A new Trac ticket with an xname checks it; the result is commented there.
            "check-ticket": {
                "run_args_template": "stat-bot task hw-check {xname} --ticket {ticket}",
                "report_stdout": True,
                "report_format": "blocks",
                "timeout": 600,
                "coalesce": False,
            },
        },
        "slack": [
            {
                "command": "show [target:target=all]",
                "help": "What [target] selects: count, xnames, hostnames, each node's latest health",
                "action": "schedule_job",
                "job_type": "show",
            },
            {
                "command": "check [target:target=all]",
                "help": "Check [target] now over Redfish (and SSH): totals, then each problem node",
                "action": "schedule_job",
                "job_type": "check",
            },
            {
                "command": "sweep [target:target=all]",
                "help": "Sweep [target]: what changed since the previous sweep of it",
                "action": "schedule_job",
                "job_type": "sweep",
            },
            {
                "command": "inventory [target:target=all]",
                "help": "Model, serial, CPUs, memory and BIOS of each node in [target]",
                "action": "schedule_job",
                "job_type": "inventory",
            },
            {
                "command": "firmware [target:target=all]",
                "help": "Firmware versions in [target] that differ from the fleet's majority",
                "action": "schedule_job",
                "job_type": "firmware",
            },
            {
                "command": "sel [target:target] [count:int=10]",
                "help": "The last [count] event-log entries of each node in [target]",
                "action": "schedule_job",
                "job_type": "sel",
            },
            {
                "command": "power [target:target] [action:on|off|restart]",
                "help": "Power [target] on, off or restart (ComputerSystem.Reset)",
                "action": "schedule_job",
                "job_type": "power",
            },
            {
                "command": "power [target:target] status",
                "help": "Whether each node of [target] is on or off",
                "action": "schedule_job",
                "job_type": "power-status",
            },
            {
                "command": "drain [target:target] [reason...]",
                "help": "Drain [target]'s nodes in Slurm with [reason] (shown by sinfo -R)",
                "action": "schedule_job",
                "job_type": "drain",
            },
            {
                "command": "resume [target:target]",
                "help": "Return [target]'s drained nodes to service in Slurm",
                "action": "schedule_job",
                "job_type": "resume",
            },
            {
                "command": "slurm [target:target]",
                "help": "[target]'s nodes as Slurm sees them: state and drain reason",
                "action": "schedule_job",
                "job_type": "slurm",
            },
        ],
        "schedules": [
            # The daily sweep of every node; quiet when nothing changed. It reports to
            # SLACK_LOGS_CHANNEL unless given a "channel" (e.g. "#hpc-ops"). Without
            # HW_INVENTORY it does not fire at all.
            {
                "cron": "0 6 * * *",
                "job_type": "sweep",
                "name": "daily-sweep",
                "args": {"target": "all"},
                "requires": ["HW_INVENTORY"],
            },
        ],
        "trac_rules": [
            {
                "event": "created",
                "when": {"xname": "x*"},
                "job_type": "check-ticket",
                "args": {"xname": "{xname}", "ticket": "{ticket}"},
            },
        ],
        # Alert rules (README, "Alert rules"): an alert that starts firing (from
        # Alertmanager, PagerDuty or a paging tool's Slack message) queues a job, once per
        # firing; its report goes to ONCALL_CHANNEL (the paging message's thread when the
        # alert was read there). Here a node or BMC that stops answering is checked at
        # once. Conditions: alertname, title, severity, labels (a value, "re:<regex>",
        # True/False for present/absent, or a list), source, status ("firing" or
        # "resolved"). The label's value must be an xname ("arg_types"): anything else,
        # even "all", is refused with the reason and never run.
        "alert_rules": [
            {
                "alertname": ["NodeDown", "BMCUnreachable"],
                "labels": {"xname": True},
                "job_type": "check",
                "args": {"target": "{xname}"},
                "arg_types": {"target": "xname"},
            },
        ],
        # Closing the loop (README, "Hardware rules"): a check that finds a node critical
        # opens a Trac ticket for its xname (or comments on the open one) and offers to
        # drain it with the reason `STAT#<ticket>: <problem>`; a later passing check
        # comments on the ticket and offers to resume it. The first rule covering a node
        # applies. Keys: when (states), xnames (patterns), ticket, ticket_type,
        # ticket_priority, drain (confirm|direct|no), resume (offer|direct|no),
        # drain_job, resume_job, channel.
        "hw_rules": [
            {"when": "critical", "ticket": True, "drain": "confirm", "resume": "offer"},
        ],
    },
}
