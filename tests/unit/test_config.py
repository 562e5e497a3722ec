"""job_configs.py: ebmbot's format loads unchanged, and every mistake is explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from stat_bot.jobs.config import (
    RESERVED_NAMESPACES,
    ConfigError,
    load_config,
    parse_config,
    render_template,
    template_fields,
)
from stat_bot.jobs.params import Param
from tests.conftest import write_configs
from tests.unit.helpers import one_namespace, problems_of

# --- the ebmbot README's examples, pasted verbatim -------------------------------------

README_SIMPLE = """
raw_config = {
    "example": {
        "jobs": {
            "hello": {
                "run_args_template": "echo Hello",
                "report_stdout": True,
            },
        },
        "slack": [
            {
                "command": "say hello",
                "help": "Says hello",
                "action": "schedule_job",
                "job_type": "hello",
                "delay_seconds": 1,
            },
        ]
    }
}
"""

README_PARAMS = """
raw_config = {
    "example": {
        "jobs": {
            "hello_to": {
                "run_args_template": "echo Hello {name}",
                "report_stdout": True,
            },
        },
        "slack": [
            {
                "command": "say hello [name]",
                "help": "Says hello to [name]",
                "action": "schedule_job",
                "job_type": "hello_to",
            },
        ]
    }
}
"""

README_PYTHON = """
raw_config = {
    "example": {
        "jobs": {
            "do_python": {
                "run_args_template": "python do_job.py --some-arg {some_arg}",
                "report_stdout": True,
            },
        },
        "slack": [
            {
                "command": "do python [some_arg]",
                "help": "Runs a python script with --some-arg [some_arg]",
                "action": "schedule_job",
                "job_type": "do_python",
            },
        ]
    }
}
"""

README_FABRIC = """
raw_config = {
    "example": {
        "fabfile": "https://location/of/fabfile.py",
        "jobs": {
            "do_fab": {
                "run_args_template": "fab <command>",
                "report_success": True,
            },
        },
    }
}
"""


def test_readme_simple_bash_command(configure):
    configs = configure(README_SIMPLE)
    job = configs.job("example", "hello")
    assert job.run_args_template == "echo Hello"
    assert job.report_stdout is True
    (command,) = configs.namespaces["example"].commands
    assert command.tokens == ("say", "hello")
    assert command.spec.help == "Says hello"
    assert command.spec.delay_seconds == 1
    assert command.spec.job_type == "hello"
    assert render_template(job.run_args_template, {}) == "echo Hello"


def test_readme_command_with_parameters(configure):
    configs = configure(README_PARAMS)
    job = configs.job("example", "hello_to")
    (command,) = configs.namespaces["example"].commands
    assert command.literals == ("say", "hello")
    assert command.params == (Param("name", rest=True),)  # the last one takes the rest (ebmbot)
    assert template_fields(job.run_args_template) == ["name"]
    assert render_template(job.run_args_template, {"name": "Bob"}) == "echo Hello Bob"


def test_readme_python_script(configure):
    configs = configure(README_PYTHON)
    job = configs.job("example", "do_python")
    (command,) = configs.namespaces["example"].commands
    assert [p.name for p in command.params] == ["some_arg"]
    assert (
        render_template(job.run_args_template, {"some_arg": "x"}) == "python do_job.py --some-arg x"
    )


def test_readme_fabric_job(configure):
    configs = configure(README_FABRIC)
    namespace = configs.namespaces["example"]
    assert namespace.spec.fabfile == "https://location/of/fabfile.py"
    assert configs.job("example", "do_fab").run_args_template == "fab <command>"
    assert namespace.commands == ()


@pytest.mark.parametrize("fmt", ["text", "blocks", "code", "file"])
def test_every_report_format_loads(fmt):
    configs = parse_config(
        one_namespace({"j": {"run_args_template": "echo", "report_format": fmt}})
    )
    assert configs.job("ns", "j").report_format == fmt


def test_defaults_match_ebmbot():
    configs = parse_config(
        one_namespace({"j": {"run_args_template": "echo"}}, [{"command": "go", "job_type": "j"}])
    )
    job = configs.job("ns", "j")
    assert job.report_stdout is False
    assert job.report_success is True
    assert job.report_format == "text"
    assert job.concurrency == 1
    assert job.coalesce is True
    assert job.retries == 0
    assert job.timeout is None
    (command,) = configs.namespaces["ns"].commands
    assert command.spec.action == "schedule_job"
    assert command.spec.delay_seconds == 0
    assert command.spec.help == ""
    namespace = configs.namespaces["ns"].spec
    assert namespace.restricted is False
    assert namespace.description == ""


def test_ebmbot_actions_and_description_are_accepted():
    configs = parse_config(
        {
            "op": {
                "description": "OpenPrescribing",
                "restricted": True,
                "jobs": {"deploy": {"run_args_template": "fab deploy"}},
                "slack": [
                    {"command": "deploy", "job_type": "deploy", "action": "schedule_job"},
                    {"command": "cancel deploy", "job_type": "deploy", "action": "cancel_job"},
                    {
                        "command": "suppress deploy from [start_at] to [end_at]",
                        "job_type": "deploy",
                        "action": "schedule_suppression",
                    },
                    {
                        "command": "unsuppress deploy",
                        "job_type": "deploy",
                        "action": "cancel_suppression",
                    },
                ],
            }
        }
    )
    namespace = configs.namespaces["op"]
    assert namespace.spec.restricted is True
    assert {c.spec.action for c in namespace.commands} == {
        "schedule_job",
        "cancel_job",
        "schedule_suppression",
        "cancel_suppression",
    }


def test_more_specific_commands_are_tried_first():
    configs = parse_config(
        one_namespace(
            {"a": {"run_args_template": "echo {x}"}, "b": {"run_args_template": "echo hi {x}"}},
            [
                {"command": "say [x...]", "job_type": "a"},
                {"command": "say hello [x...]", "job_type": "b"},
            ],
        )
    )
    assert [c.text for c in configs.namespaces["ns"].commands] == [
        "say hello [x...]",
        "say [x...]",
    ]


def test_schedules_get_stable_keys():
    configs = parse_config(
        one_namespace(
            {"j": {"run_args_template": "echo {a}"}},
            schedules=[
                {"cron": "0 * * * *", "job_type": "j", "args": {"a": "1"}, "name": "hourly"},
                {"cron": "0 0 * * *", "job_type": "j", "args": {"a": "2"}},
            ],
        )
    )
    assert [s.key for s in configs.schedules()] == ["ns.hourly", "ns.j.1"]


# --- every kind of mistake, with where it is and what would be valid -------------------


def test_unknown_key_suggests_the_close_one():
    (problem,) = problems_of(
        one_namespace({"hello": {"run_args_template": "echo", "report_fromat": "code"}})
    )
    assert "namespace 'ns'" in problem
    assert "job 'hello'" in problem
    assert "unknown key 'report_fromat'" in problem
    assert "did you mean 'report_format'?" in problem
    assert "valid keys:" in problem
    assert "report_stdout" in problem


@pytest.mark.parametrize(
    ("raw", "where", "key", "suggestion"),
    [
        (one_namespace({}, description_="x"), "namespace 'ns'", "description_", "description"),
        (
            one_namespace(
                {"j": {"run_args_template": "echo"}},
                [{"command": "go", "job_type": "j", "halp": 1}],
            ),
            "command 'go'",
            "halp",
            "help",
        ),
        (
            one_namespace(
                {"j": {"run_args_template": "echo"}},
                schedules=[{"cron": "0 * * * *", "job_type": "j", "chanel": "C1"}],
            ),
            "schedule '0 * * * *'",
            "chanel",
            "channel",
        ),
    ],
)
def test_unknown_keys_everywhere_name_their_place(raw, where, key, suggestion):
    (problem,) = problems_of(raw)
    assert "namespace 'ns'" in problem
    assert where in problem
    assert f"unknown key {key!r}" in problem
    assert f"did you mean {suggestion!r}?" in problem


def test_wrong_type_names_key_and_value():
    (problem,) = problems_of(
        one_namespace({"hello": {"run_args_template": "echo", "report_stdout": "yes please"}})
    )
    assert "namespace 'ns', job 'hello'" in problem
    assert "key 'report_stdout'" in problem
    assert "boolean" in problem
    assert "'yes please'" in problem


@pytest.mark.parametrize("value", [True, False, "type"])
def test_coalesce_takes_true_false_or_type(value):
    configs = parse_config(one_namespace({"j": {"run_args_template": "echo", "coalesce": value}}))
    assert configs.job("ns", "j").coalesce == value


@pytest.mark.parametrize("value", ["args", "Type", "yes", 1, None, ["type"]])
def test_another_coalesce_value_names_the_three_choices(value):
    (problem,) = problems_of(
        one_namespace({"hello": {"run_args_template": "echo", "coalesce": value}})
    )
    assert "namespace 'ns', job 'hello'" in problem
    assert "key 'coalesce'" in problem
    assert (
        "True (merge a request into a queued job of the same type with the same arguments)"
        in problem
    )
    assert '"type" (merge any request of the type; the latest arguments win)' in problem
    assert "False (every request is its own job)" in problem
    assert repr(value) in problem


def test_wrong_numeric_value_says_the_bound():
    (problem,) = problems_of(
        one_namespace({"hello": {"run_args_template": "echo", "concurrency": 0}})
    )
    assert "job 'hello'" in problem
    assert "key 'concurrency'" in problem
    assert "greater than or equal to 1" in problem


def test_invalid_report_format_lists_the_valid_ones():
    (problem,) = problems_of(
        one_namespace({"hello": {"run_args_template": "echo", "report_format": "html"}})
    )
    assert "job 'hello'" in problem
    assert "key 'report_format'" in problem
    assert "'html'" in problem
    for valid in ("'text'", "'blocks'", "'code'", "'file'"):
        assert valid in problem


def test_bad_action_lists_the_valid_ones():
    (problem,) = problems_of(
        one_namespace(
            {"j": {"run_args_template": "echo"}},
            [{"command": "go now", "job_type": "j", "action": "run_job"}],
        )
    )
    assert "namespace 'ns', command 'go now'" in problem
    assert "key 'action'" in problem
    assert "'run_job'" in problem
    for valid in ("schedule_job", "cancel_job", "schedule_suppression", "cancel_suppression"):
        assert valid in problem


def test_command_with_unknown_job_type():
    (problem,) = problems_of(
        one_namespace(
            {"hello": {"run_args_template": "echo"}, "bye": {"run_args_template": "echo"}},
            [{"command": "go", "job_type": "helo"}],
        )
    )
    assert "namespace 'ns', command 'go'" in problem
    assert "key 'job_type'" in problem
    assert "unknown job 'helo'" in problem
    assert "did you mean 'hello'?" in problem
    assert "jobs in this namespace: hello, bye" in problem


def test_missing_required_key():
    (problem,) = problems_of(one_namespace({"hello": {"report_stdout": True}}))
    assert "job 'hello'" in problem
    assert "missing required key 'run_args_template'" in problem


def test_command_placeholders_missing_from_command():
    (problem,) = problems_of(
        one_namespace(
            {"hi": {"run_args_template": "echo {greeting} {name}"}},
            [{"command": "say [greeting]", "job_type": "hi"}],
        )
    )
    assert "command 'say [greeting]'" in problem
    assert "job 'hi'" in problem
    assert "'echo {greeting} {name}'" in problem
    assert "the template needs [name]" in problem


def test_command_placeholders_not_in_template():
    (problem,) = problems_of(
        one_namespace(
            {"hi": {"run_args_template": "echo {name}"}},
            [{"command": "say [name] [mood]", "job_type": "hi"}],
        )
    )
    assert "command 'say [name] [mood]'" in problem
    assert "the template has no {mood}" in problem
    assert "needs" not in problem


def test_both_missing_and_extra_placeholders_are_named():
    (problem,) = problems_of(
        one_namespace(
            {"hi": {"run_args_template": "echo {a} {b}"}},
            [{"command": "say [a] [c]", "job_type": "hi"}],
        )
    )
    assert "the template needs [b]" in problem
    assert "the template has no {c}" in problem


@pytest.mark.parametrize(
    "template",
    [
        "echo '{name}'",
        'echo "{name}"',
        'echo "Hello {name}!"',
        "bash -c 'echo {name}'",
    ],
)
def test_quotes_around_a_placeholder_are_refused(template):
    (problem,) = problems_of(
        one_namespace(
            {"hi": {"run_args_template": template}}, [{"command": "hi [name]", "job_type": "hi"}]
        )
    )
    assert "namespace 'ns', job 'hi'" in problem
    assert "key 'run_args_template'" in problem
    assert "remove the quotes around {name}" in problem
    assert "shell-quoted for you" in problem


@pytest.mark.parametrize(
    "template",
    [
        "echo {name}",
        "echo \"Hello\" {name} 'there'",
        "echo it\\'s {name}",
        'printf "%s\\n" {name}',
        "echo {{literal}} {name}",
    ],
)
def test_placeholders_outside_quotes_are_fine(template):
    configs = parse_config(
        one_namespace(
            {"hi": {"run_args_template": template}}, [{"command": "hi [name]", "job_type": "hi"}]
        )
    )
    assert configs.has_job("ns", "hi")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("echo {name", "expected '}'"),
        ("echo name}", "'}'"),
        ("echo {name!r}", "{name!r} must be a plain name"),
        ("echo {name:>10}", "{name:>10} must be a plain name"),
        ("echo {}", "{} must be a plain name"),
        ("echo {0}", "{0} must be a plain name"),
    ],
)
def test_malformed_template_braces(template, expected):
    problems = problems_of(one_namespace({"hi": {"run_args_template": template}}))
    assert len(problems) == 1
    assert "namespace 'ns', job 'hi'" in problems[0]
    assert "key 'run_args_template'" in problems[0]
    assert expected in problems[0]


def _command_problem(command: str, template: str = "echo {a} {b}") -> str:
    (problem,) = problems_of(
        one_namespace(
            {"j": {"run_args_template": template}}, [{"command": command, "job_type": "j"}]
        )
    )
    assert f"namespace 'ns', command {command!r}" in problem
    return problem


def test_placeholder_with_unknown_type():
    problem = _command_problem("go [a:date] [b]")
    assert "key 'command'" in problem
    assert "unknown type 'date'" in problem
    assert "str, int, float, xname" in problem
    assert "a|b|c" in problem


def test_default_that_does_not_fit_its_type():
    problem = _command_problem("go [a:int=many] [b=2]")
    assert "default of [a] must be a whole number" in problem
    assert "'many'" in problem


def test_default_not_among_choices():
    problem = _command_problem("go [a:1h|2h=3h] [b=x]")
    assert "default of [a] must be one of 1h, 2h" in problem


def test_defaulted_placeholder_followed_by_required_one():
    problem = _command_problem("go [a=1] [b]")
    assert "[a=1] has a default" in problem
    assert "after it need one too" in problem


def test_rest_placeholder_must_be_last():
    problem = _command_problem("go [a...] [b]")
    assert "[a...] takes the rest of the line, so it must come last" in problem


def test_repeated_placeholder():
    problem = _command_problem("go [a] [a]", template="echo {a}")
    assert "[a] appears more than once" in problem


def test_empty_choice():
    problem = _command_problem("go [a:1h||2h] [b]")
    assert "empty choice" in problem


def test_half_written_placeholder():
    problem = _command_problem("go [a [b]")
    assert "'[a' is not a placeholder" in problem
    assert "[name:int]" in problem


def test_command_must_start_with_a_word():
    problem = _command_problem("[a] [b]")
    assert "must start with a word" in problem


def test_duplicate_commands():
    (problem,) = problems_of(
        one_namespace(
            {"a": {"run_args_template": "echo {x}"}, "b": {"run_args_template": "echo {y}"}},
            [
                {"command": "say [x]", "job_type": "a"},
                {"command": "Say [y:int]", "job_type": "b"},
            ],
        )
    )
    assert "command 'Say [y:int]'" in problem
    assert "same words as command 'say [x]'" in problem
    assert "can never match" in problem


def test_schedule_with_invalid_cron():
    (problem,) = problems_of(
        one_namespace(
            {"j": {"run_args_template": "echo"}},
            schedules=[{"cron": "every day", "job_type": "j", "name": "daily"}],
        )
    )
    assert "namespace 'ns', schedule 'daily'" in problem
    assert "key 'cron'" in problem
    assert "'every day' is not a cron expression" in problem
    assert "'0 * * * *'" in problem


def test_schedule_args_not_matching_the_template():
    (problem,) = problems_of(
        one_namespace(
            {"j": {"run_args_template": "echo {a} {b}"}},
            schedules=[{"cron": "0 * * * *", "job_type": "j", "args": {"a": "1", "c": "3"}}],
        )
    )
    assert "namespace 'ns', schedule '0 * * * *'" in problem
    assert "key 'args'" in problem
    assert "['a', 'b']" in problem
    assert "got ['a', 'c']" in problem


def test_schedule_with_unknown_job():
    (problem,) = problems_of(
        one_namespace(
            {"report": {"run_args_template": "echo"}},
            schedules=[{"cron": "0 * * * *", "job_type": "reprot", "name": "hourly"}],
        )
    )
    assert "namespace 'ns', schedule 'hourly'" in problem
    assert "unknown job 'reprot'" in problem
    assert "did you mean 'report'?" in problem
    assert "jobs in this namespace: report" in problem


def test_schedules_sharing_a_key():
    (problem,) = problems_of(
        one_namespace(
            {"j": {"run_args_template": "echo"}},
            schedules=[
                {"cron": "0 * * * *", "job_type": "j", "name": "same"},
                {"cron": "5 * * * *", "job_type": "j", "name": "same"},
            ],
        )
    )
    assert "'ns.same'" in problem
    assert "distinct 'name's" in problem


@pytest.mark.parametrize("name", sorted(RESERVED_NAMESPACES))
def test_reserved_namespace_names(name):
    (problem,) = problems_of({name: {"jobs": {}}})
    assert f"namespace {name!r}" in problem
    assert "built-in command" in problem
    assert "choose another" in problem


def test_reserved_names_include_the_builtin_commands():
    assert {"help", "status", "jobs", "logs", "cancel"} <= RESERVED_NAMESPACES


@pytest.mark.parametrize("name", ["My NS", "Trac", "1st", "a/b", "", "ns.x", 3])
def test_bad_namespace_names(name):
    (problem,) = problems_of({name: {"jobs": {}}})
    assert f"namespace {name!r}" in problem
    assert "lower-case letters, digits, _ or -" in problem


def test_bad_job_names():
    (problem,) = problems_of(one_namespace({"Hello World": {"run_args_template": "echo"}}))
    assert "job name 'Hello World'" in problem
    assert "lower-case" in problem


def test_namespace_that_is_not_a_dict():
    (problem,) = problems_of({"ns": ["echo"]})
    assert problem.startswith("namespace 'ns': ")
    assert "valid dictionary" in problem
    assert "key ''" not in problem


def test_job_that_is_not_a_dict():
    (problem,) = problems_of(one_namespace({"j": "echo hi"}))
    assert problem.startswith("namespace 'ns', job 'j': ")
    assert "valid dictionary" in problem
    assert "key ''" not in problem


@pytest.mark.parametrize("raw", [[], "x", None, 5])
def test_raw_config_not_a_dict(raw):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    (problem,) = caught.value.problems
    assert "raw_config must be a dict of namespaces" in problem
    assert type(raw).__name__ in problem


def test_several_mistakes_are_all_reported():
    raw = {
        "help": {"jobs": {}},
        "Bad": {"jobs": {}},
        "one": {
            "jobs": {
                "a": {"run_args_template": "echo", "report_fromat": "x", "retries": "lots"},
            }
        },
        "two": {
            "jobs": {"b": {"run_args_template": "echo '{x}'"}},
            "slack": [
                {"command": "go [x]", "job_type": "c"},
                {"command": "run [y]", "job_type": "b"},
            ],
        },
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, source="sample.py")
    problems = caught.value.problems
    assert len(problems) == 7, problems
    text = str(caught.value)
    for fragment in (
        "namespace 'help'",
        "namespace 'Bad'",
        "unknown key 'report_fromat'",
        "key 'retries'",
        "remove the quotes around {x}",
        "unknown job 'c'",
        "the template has no {y}",
    ):
        assert fragment in text
    # Each problem is its own line, prefixed with the file it came from.
    assert text.splitlines() == [f"sample.py: {p}" for p in problems]


# --- loading the file --------------------------------------------------------------


def test_load_from_file_reports_the_file_name(home: Path):
    path = write_configs(home / "site_jobs.py", {"Bad": {}})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == "site_jobs.py"
    assert str(caught.value).startswith("site_jobs.py: namespace 'Bad'")


def test_syntax_error_gives_the_line(home: Path):
    path = write_configs(
        home / "job_configs.py",
        'raw_config = {\n    "ns": {\n        "jobs": {},\n        "slack": [},\n    }\n}\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert "syntax error" in problem
    assert problem.startswith("line 4: ")


def test_exception_on_import(home: Path):
    path = write_configs(
        home / "job_configs.py", "import os\nraw_config = {'ns': os.environ['NOPE_X']}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert "importing it raised KeyError" in problem
    assert "NOPE_X" in problem


def test_missing_raw_config(home: Path):
    path = write_configs(home / "job_configs.py", "config = {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert "defines no raw_config" in problem


def test_missing_file(home: Path):
    with pytest.raises(ConfigError) as caught:
        load_config(home / "absent.py")
    (problem,) = caught.value.problems
    assert "no such file" in problem
    assert "absent.py" in problem
    assert "JOB_CONFIGS" in problem


def test_loading_leaves_no_module_behind(home: Path):
    import sys

    before = set(sys.modules)
    path = write_configs(home / "job_configs.py", {"ns": {"jobs": {}}})
    load_config(path)
    assert not {m for m in set(sys.modules) - before if "job_configs" in m}


def test_config_file_can_compute_raw_config(home: Path):
    path = write_configs(
        home / "job_configs.py",
        """
        NODES = ["a", "b"]
        raw_config = {
            "ns": {
                "jobs": {f"check_{n}": {"run_args_template": f"check {n}"} for n in NODES},
            }
        }
        """,
    )
    configs = load_config(path)
    assert set(configs.namespaces["ns"].jobs) == {"check_a", "check_b"}


def test_the_shipped_job_configs_load():
    root = Path(__file__).resolve().parents[2]
    configs = load_config(root / "job_configs.py")
    assert configs.namespaces


def test_cross_checks_still_run_when_some_items_are_refused():
    """A refused job does not hide a command's own mistake elsewhere in the namespace."""
    raw = one_namespace(
        {
            "good": {"run_args_template": "echo {name}"},
            "typo": {"run_args_template": "true", "report_fromat": "code"},
        },
        [
            {"command": "greet [nme]", "job_type": "good"},
            {"command": "uses typo", "job_type": "typo"},
            {"command": "elsewhere", "job_type": "missing"},
        ],
    )
    problems = problems_of(raw)
    assert len(problems) == 3, problems
    assert "job 'typo': unknown key 'report_fromat'" in problems[0]
    assert any("command 'greet [nme]'" in p and "[name]" in p for p in problems)
    assert any("command 'elsewhere'" in p and "unknown job 'missing'" in p for p in problems)
    assert not any("uses typo" in p for p in problems), "the refused job is not blamed twice"
