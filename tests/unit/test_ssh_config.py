"""SshConfig from the SSH_* variables a workspace script gets: defaults and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from stat_bot.integrations.ssh import SshConfig, SshSetupError


def test_nothing_set_means_strict_host_keys_and_defaults():
    config = SshConfig.from_environment({})
    assert config == SshConfig()
    assert config.known_hosts == "strict"
    assert config.known_hosts_path == Path("~/.ssh/known_hosts").expanduser()


def test_every_variable_is_read():
    config = SshConfig.from_environment(
        {
            "SSH_USER": "checker",
            "SSH_KEY_FILE": "/etc/stat-bot/id_ed25519",
            "SSH_PORT": "2222",
            "SSH_KNOWN_HOSTS": "accept-new",
            "SSH_KNOWN_HOSTS_FILE": "/var/lib/stat-bot/known_hosts",
            "SSH_TIMEOUT": "4.5",
            "SSH_CONFIG_FILE": "/etc/stat-bot/ssh_config",
        }
    )
    assert config == SshConfig(
        user="checker",
        key_file=Path("/etc/stat-bot/id_ed25519"),
        port=2222,
        known_hosts="accept-new",
        known_hosts_file=Path("/var/lib/stat-bot/known_hosts"),
        timeout=4.5,
        ssh_config_file=Path("/etc/stat-bot/ssh_config"),
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SSH_PORT": "twenty-two"}, "SSH_PORT='twenty-two' is not a number"),
        ({"SSH_PORT": "70000"}, "SSH port 70000 is not between 1 and 65535"),
        ({"SSH_TIMEOUT": "0"}, "SSH timeout must be more than 0 seconds"),
        ({"SSH_KNOWN_HOSTS": "yes"}, "SSH_KNOWN_HOSTS='yes' is not one of strict, accept-new, off"),
    ],
)
def test_a_wrong_value_names_the_variable(env, message):
    with pytest.raises(SshSetupError) as caught:
        SshConfig.from_environment(env)
    assert message in str(caught.value)
