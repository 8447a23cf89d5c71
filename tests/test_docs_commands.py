"""Every snakemake command in the documentation dry-runs: the docs cannot rot.

Commands are taken from fenced code blocks (continuation lines joined, comments dropped, pipes and ``&&`` split)
and from inline code spans that start with ``snakemake`` in README.md, docs/*.md and profiles/README.md. Each
runs with ``-n`` in a fresh copy of the workflow; Slurm-profile commands dry-run through the real profile (the
executor plugin needs no cluster for a dry run); ``--report`` runs on the finished tiny run, with its config.
Files named in a command must also reach Snakemake as targets (not as one more ``--configfile``).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import ROOT, copy_workflow, run_snakemake

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "profiles" / "README.md"]
# Flags that act on a finished run instead of planning jobs: run on the tiny workflow run (the tiny_run fixture).
NEEDS_A_RUN = ("--report",)


def _is_snakemake(word: str) -> bool:
    return word == "snakemake" or word.endswith("/snakemake")


def commands_in(text: str) -> list[str]:
    """The snakemake command lines of a Markdown text, as written (without the part after a pipe)."""
    found = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            segment: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", "|", ";", "||"):
                    if segment and _is_snakemake(segment[0]):
                        found.append(shlex.join(segment))
                    segment = []
                else:
                    segment.append(word)
    for span in re.findall(r"`([^`\n]+)`", text):
        words = shlex.split(span)
        if words and _is_snakemake(words[0]) and len(words) > 1:
            found.append(shlex.join(words))
    return found


def all_commands() -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        for cmd in commands_in(path.read_text(encoding="utf-8")):
            if (path.name, cmd) not in out:
                out.append((str(path.relative_to(ROOT)), cmd))
    return out


COMMANDS = all_commands()


def test_the_extraction_finds_the_documented_commands():
    text = (
        "```bash\n.venv/bin/snakemake --cores all   # all\n"
        ".venv/bin/snakemake --dag | dot -Tpdf > dag.pdf\n"
        "bash scripts/setup_env.sh && .venv/bin/snakemake --cores all\n"
        ".venv/bin/snakemake --profile p \\\n    results/x.pdf   # one\n```\n"
        "and inline `snakemake --profile profiles/slurm -n`, not `snakemake.resources.gpu > 0`."
    )
    assert commands_in(text) == [
        ".venv/bin/snakemake --cores all",
        ".venv/bin/snakemake --dag",
        ".venv/bin/snakemake --cores all",
        ".venv/bin/snakemake --profile p results/x.pdf",
        "snakemake --profile profiles/slurm -n",
    ]
    readme = [cmd for doc, cmd in COMMANDS if doc == "README.md"]
    assert len(readme) >= 10 and any("--profile profiles/slurm" in c for c in readme)


@pytest.fixture(scope="module")
def workflow_dir(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("docs") / "wf")


def _targets_parsed_as_targets(args: list[str]) -> None:
    """A file named in the command must reach Snakemake as a target, not as one more value of a
    several-valued option (``--configfile a.yaml results/x.pdf`` reads the target as a config file)."""
    from snakemake.cli import get_argument_parser

    parsed = get_argument_parser().parse_args(args)
    named = [a for a in args if a.startswith("results/")]
    assert list(parsed.targets or []) == named, f"targets {named} are parsed as {parsed.targets}"


@pytest.mark.parametrize("doc, cmd", COMMANDS, ids=[f"{d}:{c}" for d, c in COMMANDS])
def test_documented_command_dry_runs(request, workflow_dir, doc, cmd):
    args = shlex.split(cmd)[1:]
    _targets_parsed_as_targets(args)
    if any(a in NEEDS_A_RUN for a in args):
        # a report needs a finished run: the tiny one of the workflow tests (same session), with its config
        proc = run_snakemake(
            request.getfixturevalue("tiny_run"), *args, "--configfile", "config/tiny.yaml", timeout=300, check=False
        )
    else:
        proc = run_snakemake(workflow_dir, *args, "-n", timeout=300, check=False)
    assert proc.returncode == 0, (
        f"{doc}: `{cmd}` fails (exit {proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    if not any(a in (*NEEDS_A_RUN, "--unlock", "--dag") for a in args):
        assert "This was a dry-run" in proc.stdout + proc.stderr, proc.stdout[-2000:]
