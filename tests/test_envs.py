"""The conda environments in envs/: exact pins (those of requirements.txt), and per rule, every third-party
module its code path imports. Conda channels cannot be reached here, so the check is static: it follows each
rule's script through the package's module-level imports and looks the modules up in the rule's env file."""

import ast
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Workflow-engine packages: needed where Snakemake runs, not inside the per-rule environments.
ENGINE = {"snakemake", "snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep"}


def parse_pins(lines, source):
    pins = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-r"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{source}: {raw!r} is not pinned exactly (name==version)"
        pins[name.strip().lower()] = version.strip()
    return pins


def requirements():
    return parse_pins((ROOT / "requirements.txt").read_text().splitlines(), "requirements.txt")


def env_pins(path):
    spec = yaml.safe_load(path.read_text())
    assert "nodefaults" in spec["channels"], f"{path.name}: channels must include nodefaults"
    deps = spec["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    assert "python=3.11" in conda, f"{path.name}: python must be pinned to 3.11"
    pip = [d for d in deps if isinstance(d, dict)]
    assert len(pip) == 1 and "pip" in pip[0], f"{path.name}: expected one pip: section"
    return parse_pins(pip[0]["pip"], path.name)


ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_requirements(path):
    req = requirements()
    for name, version in env_pins(path).items():
        assert name in req, f"{path.name}: {name} is not in requirements.txt"
        assert version == req[name], f"{path.name}: {name}=={version}, requirements.txt has {req[name]}"


def test_envs_cover_every_runtime_requirement():
    covered = set().union(*(env_pins(p) for p in ENV_FILES))
    missing = set(requirements()) - ENGINE - covered
    assert not missing, f"requirements.txt pins {sorted(missing)} but no env in envs/ lists them"


# Import name -> the pinned distribution that provides it (joblib is installed with scikit-learn).
DISTRIBUTION = {"sklearn": "scikit-learn", "yaml": "pyyaml", "joblib": "scikit-learn", "threadpoolctl": "scikit-learn"}
PACKAGE = "latent_abstractions"
SRC = ROOT / "src"


def module_file(module):
    """The source file of a package module (``latent_abstractions.x.y``), or None if it is not one."""
    base = SRC.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path, module):
    """Absolute names of the modules ``path`` imports when it is loaded: module-level statements, including
    those under ``if``/``try``/``with`` blocks, but not function bodies or ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module
                names.append(base)
                names.extend(f"{base}.{alias.name}" for alias in node.names)  # submodules, if they are modules
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "finalbody", []))

    visit(tree.body)
    return names


def third_party_imports(script):
    """Top-level third-party modules that running ``script`` imports at load time, following the package."""
    seen, found = set(), {}
    todo = [(script, "__main__", [script.name])]
    # The script's own body runs in full (its imports sit in the `with rule_logging(...)` block).
    while todo:
        path, module, chain = todo.pop()
        for name in imported_modules(path, module):
            top = name.split(".")[0]
            if top == PACKAGE:
                target = module_file(name)
                if target is not None and name not in seen:
                    seen.add(name)
                    todo.append((target, name, [*chain, name]))
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, chain)
    return found


SCRIPTS = sorted((ROOT / "workflow" / "scripts").glob("*.py"))


def scripted_rules(workflow_rules) -> dict[str, tuple[Path, Path | None]]:
    """{rule: (script path, conda env file or None)} of the rules that run a script, as Snakemake parsed them."""
    return {
        name: ((ROOT / rule["script"]).resolve(), (ROOT / rule["conda"]).resolve() if rule["conda"] else None)
        for name, rule in workflow_rules.items()
        if rule["script"]
    }


def test_every_script_is_run_by_a_rule_in_a_conda_env(workflow_rules):
    rules = scripted_rules(workflow_rules)
    assert {script for script, _ in rules.values()} == {p.resolve() for p in SCRIPTS}
    no_env = sorted(name for name, (_, env) in rules.items() if env is None)
    assert not no_env, f"rules that run a script but declare no conda env: {no_env}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_rule_env_lists_every_third_party_module_its_code_imports(script, workflow_rules):
    envs = {rule: env for rule, (path, env) in scripted_rules(workflow_rules).items() if path == script.resolve()}
    assert envs, f"{script.name} is no rule's script"
    imports = third_party_imports(script)
    for rule, env in envs.items():
        assert env is not None and env.is_file(), f"rule {rule}: conda env {env} not found"
        listed = set(env_pins(env))
        missing = {top: chain for top, chain in imports.items() if DISTRIBUTION.get(top, top).lower() not in listed}
        assert not missing, f"rule {rule} runs in {env.name}, which lacks " + "; ".join(
            f"{top} (imported via {' -> '.join(chain)})" for top, chain in missing.items()
        )


def test_the_import_follower_sees_through_the_package(tmp_path):
    # a script importing a module that imports torch at load time needs torch; function-level imports do not count
    script = tmp_path / "s.py"
    script.write_text("from latent_abstractions.stages.measurements import run_forking\n")
    assert "torch" in third_party_imports(script) and "h5py" in third_party_imports(script)
    script.write_text("def f():\n    import torch\nimport numpy\n")
    assert set(third_party_imports(script)) == {"numpy"}
