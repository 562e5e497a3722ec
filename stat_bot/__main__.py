"""`python -m stat_bot` is `stat-bot`: how `stat-bot run` starts its parts with this interpreter."""

from stat_bot.cli import main

main()
