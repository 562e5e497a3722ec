"""The Slack bot: Bolt listeners, chat commands, permissions, the socket-mode service."""
