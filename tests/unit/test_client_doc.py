"""docs/client.md shows every CLI command with an example, and its exit-code table is the CLI's."""

import re
from pathlib import Path

from efsml_client import cli
from efsml_client import client as api

DOC = (Path(__file__).resolve().parents[2] / "docs" / "client.md").read_text()


def subcommands(parser):
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return action.choices


def test_every_command_has_an_example():
    commands = subcommands(cli.parser())
    for name, sub in commands.items():
        assert re.search(rf"^python -m efsml_client {name}\b", DOC, re.M), name
        if name == "jobs":
            for job in subcommands(sub):
                assert re.search(rf"^python -m efsml_client jobs {job}\b", DOC, re.M), job


def test_exit_code_table_is_the_clis():
    rows = dict(re.findall(r"^\| (\d+) \|(.*)$", DOC, re.M))
    assert {int(k) for k in rows} == {0, *cli.EXIT_CODES.values(), cli.EXIT_INTERRUPTED}
    for kind in (api.ClientError, api.WaitTimedOut, api.Unreachable):  # errors with the client's own code
        assert f"`{kind.code}`" in rows[str(cli.EXIT_CODES[kind])], kind
