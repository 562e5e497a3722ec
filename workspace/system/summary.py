"""Print a Block Kit summary of this machine: the `blocks` report format, by example.

Workspace scripts know nothing of STAT bot: they read arguments and environment
variables and print to stdout.
"""

import json
import os
import shutil
import socket
import time


def uptime() -> str:
    with open("/proc/uptime") as f:
        seconds = float(f.read().split()[0])
    days, rest = divmod(int(seconds), 86400)
    return f"{days} d {rest // 3600} h {rest % 3600 // 60} min"


def memory() -> str:
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0])
    total, available = info["MemTotal"], info.get("MemAvailable", info["MemFree"])
    return f"{available / 1048576:.1f} GiB free of {total / 1048576:.1f} GiB"


def disks() -> list[str]:
    lines = []
    for path in os.environ.get("SYSTEM_DISK_PATHS", "/").split():
        usage = shutil.disk_usage(path)
        lines.append(
            f"`{path}` {usage.free / 2**30:.1f} GiB free ({usage.used / usage.total:.0%} used)"
        )
    return lines


def main() -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    blocks = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{socket.gethostname()} summary"},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Uptime*\n{uptime()}"},
                {"type": "mrkdwn", "text": f"*Load (1, 5, 15 min)*\n{load}"},
                {"type": "mrkdwn", "text": f"*Memory*\n{memory()}"},
                {"type": "mrkdwn", "text": f"*CPUs*\n{os.cpu_count()}"},
            ],
        },
        {"type": "divider"},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Disks*\n" + "\n".join(disks())}},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": time.strftime("as of %Y-%m-%d %H:%M:%S %Z")}],
        },
    ]
    print(json.dumps(blocks))


if __name__ == "__main__":
    main()
