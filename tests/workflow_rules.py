"""The workflow's rules as Snakemake itself parses them, for the tests (``conftest.workflow_rules``).

Run as ``python tests/workflow_rules.py WORKFLOW_DIR OUT.json``, in its own interpreter: parsing runs
common.smk, which edits ``sys.path`` and ``PYTHONPATH`` and checks the config, and none of that should leak into
the test process. Writes {rule: {"gpu", "local", "script", "conda"}}: the rule's ``gpu`` resource (0 where it
declares none), whether it is marked ``localrule: True``, and its script and conda env file relative to
WORKFLOW_DIR (null where it has none). Reading the parsed rules, not the .smk text, keeps the tests independent of
how the rule files are formatted. Parsed with ``tau_shards: 2``, so the gather rules of sharded measurements are
there too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def parsed_rules(workflow_dir: Path) -> dict[str, dict]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings

    def relative(rule, path):
        if path is None:
            return None
        return os.path.relpath(os.path.join(str(rule.basedir), path), workflow_dir)  # paths are relative to the file

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        # with the measurements sharded, so that the gather rules (defined only then) are parsed too
        workflow = api.workflow(
            ResourceSettings(),
            ConfigSettings(config={"tau_shards": 2}),
            snakefile=workflow_dir / "Snakefile",
            workdir=workflow_dir,
        )
        wf = workflow._workflow  # the parsed Workflow object (what every CLI command builds first)
        return {
            rule.name: {
                "gpu": rule.resources["gpu"].value if "gpu" in rule.resources else 0,
                # Workflow.is_local() answers True for every rule while no cluster executor is set; the set the
                # `localrule: True` directive fills is what a cluster executor consults.
                "local": rule.name in wf._localrules,
                "script": relative(rule, rule.script),
                "conda": relative(rule, rule.conda_env),
            }
            for rule in wf.rules
        }


if __name__ == "__main__":
    workflow_dir, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    out.write_text(json.dumps(parsed_rules(workflow_dir), indent=1, sort_keys=True))
