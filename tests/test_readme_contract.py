"""README.md is the public contract: what it states is checked here against the code as it runs.

* a closed stdout ends every command with 141, quietly (the README's exit-code table), ``--version`` and a
  standalone node's JSON lines included; a standalone node whose results cannot be written never exits 0;
* the tables that name things the code defines: the node's metrics (names, types, labels), the
  ``DRAGONFLY_*`` settings (names, defaults, ranges, flags), the engine's issue kinds;
* the synopses of ``scan``, ``watch``, ``report``, ``diff`` and ``rules test`` list every option their
  command has, and nothing else.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from dragonfly_hybrid._core import ISSUE_KINDS
from dragonfly_hybrid.bounds import available_cores
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.closed_pipe import EXIT_CLOSED_PIPE
from dragonfly_hybrid.node.metrics import NodeMetrics
from dragonfly_hybrid.node.settings import CONFIG_ENV_VAR, ConfigError, NodeSettings, env_var, load_settings
from dragonfly_hybrid.rules_loader import default_rules_cache_dir

from tests.fakes.pypi import MARKER, FakeIndex, wheel
from tests.test_cli_ux import _run_into_closed_pipe

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
NO_DEFAULT = "\N{EN DASH}"
"""What the README's settings tables write for "no default"."""


def section(heading: str) -> str:
    """The README's text under ``heading`` (a whole heading line), up to the next heading of its level."""
    level = heading.split(" ", 1)[0]
    start = README.index(f"\n{heading}\n") + len(heading) + 2
    ends = [m.start() for m in re.finditer(rf"\n#{{1,{len(level)}}} ", README[start:])]
    return README[start : start + ends[0]] if ends else README[start:]


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table in ``text`` whose header starts with ``first_header``."""
    lines = text[text.index(f"| {first_header} |") :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
    return rows


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# ------------------------------------------------------------------------------------------ closed stdout


def test_version_flag_into_a_closed_pipe_exits_141_quietly() -> None:
    """``--version`` is answered before the app loads: it too must end as every command does."""
    assert _run_into_closed_pipe("--version") == (EXIT_CLOSED_PIPE, "")


@pytest.fixture
def standalone_release(fake_index: FakeIndex, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Arguments of a standalone node run of one release with findings (no metrics endpoint)."""
    monkeypatch.setenv("DRAGONFLY_METRICS_PORT", "off")
    fake_index.add("demo", wheel("demo", "1.0", {"demo/__init__.py": b"x = '" + MARKER + b"'\n"}))
    return ["node", "--job", "demo==1.0", "--index-url", fake_index.url]


def test_standalone_node_into_a_closed_pipe_exits_141_without_a_traceback(
    standalone_release: list[str], rules_dir: Path
) -> None:
    code, stderr = _run_into_closed_pipe(*standalone_release, "-r", rules_dir)
    assert code == EXIT_CLOSED_PIPE, stderr
    assert "Traceback" not in stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
@pytest.mark.parametrize("to", ["stdout", "--output"])
def test_standalone_node_whose_results_cannot_be_written_exits_3(
    standalone_release: list[str], rules_dir: Path, to: str
) -> None:
    """Exit 0 is "standalone run done": a run whose results were lost must not claim it."""
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", *standalone_release, "-r", str(rules_dir)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as a shell has it
    with open("/dev/full", "w") as full:
        if to == "--output":
            command += ["--output", "/dev/full"]
        stdout = full if to == "stdout" else subprocess.DEVNULL
        done = subprocess.run(
            command, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120, env=env, check=False
        )
    where = "stdout" if to == "stdout" else "/dev/full"
    assert done.returncode == 3, done.stderr
    assert f"error: cannot write the results to {where}: No space left on device" in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


# ------------------------------------------------------------------------------------------ node metrics


def test_the_readme_metrics_table_is_what_the_node_serves() -> None:
    rows = table_rows(section("### Metrics and health"), "metric")
    metrics = NodeMetrics()
    by_name = {}
    for collector in metrics.registry.collect():
        name = collector.name + ("_total" if collector.type == "counter" else "")
        by_name[name] = collector.type
    documented = {}
    for name_cell, kind, labels, _meaning in rows:
        [name] = code_spans(name_cell)
        documented[name] = kind
        if labels:
            label, *values = code_spans(labels)
            attribute = next(
                value
                for value in vars(metrics).values()
                if getattr(value, "_name", None) in (name, name.removesuffix("_total"))
            )
            for value in values:
                attribute.labels(**{label: value})  # a label the metric does not have raises ValueError
    assert documented == by_name
    exposition = metrics.exposition().decode()
    assert 'dragonfly_jobs_dropped_total{reason="not_found"} 0.0' in exposition


# ------------------------------------------------------------------------------------- node configuration


def config_rows() -> list[list[str]]:
    text = section("### Configuration")
    reference = table_rows(text, "variable")
    ours = table_rows(text[text.index("Ours:") :], "variable")
    return reference + ours


def test_the_readme_names_every_setting_and_no_other() -> None:
    documented = {code_spans(row[0])[0] for row in config_rows()}
    assert documented == {env_var(name) for name in NodeSettings.model_fields} | {CONFIG_ENV_VAR}


@pytest.mark.usefixtures("clean_env")
def test_the_readme_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    settings = load_settings(env_file=None)
    for variable_cell, default, _range, _meaning in config_rows():
        [variable] = code_spans(variable_cell)
        if variable == CONFIG_ENV_VAR:
            continue
        value = getattr(settings, variable.removeprefix("DRAGONFLY_").lower())
        if default == NO_DEFAULT:
            assert value is None, variable
        elif default == "available cores":
            assert value == available_cores(), variable
        elif variable == "DRAGONFLY_RULES_CACHE_DIR":
            assert Path(code_spans(default)[0]).expanduser() == value == default_rules_cache_dir()
        else:
            [text] = code_spans(default)
            assert value == type(value)(text), variable


@pytest.mark.usefixtures("clean_env")
def test_the_readme_ranges_are_enforced() -> None:
    checked = 0
    for variable_cell, _default, range_cell, _meaning in config_rows():
        match = re.fullmatch(r"(> )?([\d.]+) to ([\d.]+)", range_cell)
        if match is None:
            continue
        [variable] = code_spans(variable_cell)
        field = variable.removeprefix("DRAGONFLY_").lower()
        kind = type(NodeSettings.model_fields[field].get_default(call_default_factory=True) or 1)
        low, high = kind(match.group(2)), kind(match.group(3))
        above = high + 1 if kind is int else high * 1.001
        if match.group(1):  # "> low"
            below = low
        else:
            below = low - 1 if kind is int else (low / 2 if low > 0 else -0.001)
        for value in (low if not match.group(1) else low + (1 if kind is int else 0.001), high):
            load_settings(overrides={field: value}, env_file=None)
        refused = [above] if field == "metrics_port" else [above, below]  # port 0 means off
        for value in refused:
            with pytest.raises(ConfigError, match=variable):
                load_settings(overrides={field: value}, env_file=None)
        checked += 1
    assert checked >= 15


def test_the_flags_the_readme_gives_for_settings_set_them() -> None:
    node = getattr(typer.main.get_command(app), "commands", {})["node"]
    helps = {opt: param.help for param in node.params for opt in getattr(param, "opts", [])}
    flagged = 0
    for variable_cell, _default, _range, meaning in config_rows():
        [variable] = code_spans(variable_cell)
        for flag in re.findall(r"\(`(--[a-z-]+)`\)", meaning):
            assert helps[flag] == f"{variable}.", flag
            flagged += 1
    assert flagged == 7


# ------------------------------------------------------------------------------------------- issue kinds


def test_every_issue_kind_of_the_engine_is_in_the_readme() -> None:
    text = section("## Hostile input")
    documented = set(re.findall(r"`([a-z]+(?:-[a-z0-9]+)*)`", text))
    assert set(ISSUE_KINDS) <= documented, sorted(set(ISSUE_KINDS) - documented)


# ---------------------------------------------------------------------------------------------- synopses


def synopses() -> list[str]:
    """Every fenced block of the README that holds one command line of the tool, with its options."""
    return re.findall(r"```\n(dragonfly-hybrid [^\n]*(?:\n {10,}[^\n]*)*)\n```", README)


def test_the_synopses_list_every_option_of_their_command() -> None:
    root = typer.main.get_command(app)
    seen = []
    for synopsis in synopses():
        words, command = synopsis.split(), root
        path: list[str] = []
        for word in words[1:]:
            sub = getattr(command, "commands", {}).get(word)
            if sub is None:
                break
            command, path = sub, [*path, word]
        listed = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", synopsis))
        options = {o for p in command.params if p.param_type_name == "option" for o in p.opts}
        options.discard("--help")
        assert listed <= options, (path, sorted(listed - options))
        if "[every scan option]" not in synopsis:
            assert {o for o in options if o.startswith("--")} <= listed, (path, sorted(options - listed))
        seen.append(" ".join(path))
    assert {"scan", "watch", "report", "diff", "rules test"} <= set(seen)
