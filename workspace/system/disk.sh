#!/usr/bin/env bash
# Free space on the paths named in SYSTEM_DISK_PATHS (space-separated; default /).
set -euo pipefail
read -r -a paths <<< "${SYSTEM_DISK_PATHS:-/}"
df -h -- "${paths[@]}"
