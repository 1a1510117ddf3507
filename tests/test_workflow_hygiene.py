"""Workflow hygiene: lint, formatting, logs, benchmarks, conda envs and documented config keys.

Every list here is derived from the files (rules from the .smk files, imports from the scripts and
the radfusion modules they use, keys from the schema), so rules added later are checked without
editing this file. Only the training rule's name is fixed: the SLURM profile refers to it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT, run_snakemake

RULES_DIR = PROJECT / "workflow" / "rules"
ENVS_DIR = PROJECT / "workflow" / "envs"
PACKAGE_DIR = PROJECT / "src" / "radfusion"
SCHEMA = PROJECT / "workflow" / "schemas" / "config.schema.yaml"
CONFIG_README = PROJECT / "config" / "README.md"
SLURM_PROFILE = PROJECT / "profiles" / "slurm" / "config.yaml"

# The project's directive order (docs/architecture.md: input, output, log, benchmark, params,
# threads, resources, conda, then the action; wildcard constraints first, as the rules have them)
# in snakefmt's terms. snakefmt's own default puts conda, threads and resources before params.
SNAKEFMT_DIRECTIVE_ORDER = (
    "name,wildcard_constraints,input,output,log,benchmark,pathvars,cache,priority,retries,group,"
    "localrule,handover,shadow,params,threads,resources,conda,container,singularity,containerized,"
    "envmodules,message,default_target"
)

TRAINING_RULE = "train_model"
# Stages whose jobs run for minutes to hours: each of their rules records a benchmark.
LONG_RUNNING_STAGES = ("training", "evaluation", "radiomics")

# conda-forge names of packages whose PyPI distribution is named differently.
CONDA_FORGE_ALIASES = {
    "torch": {"pytorch", "pytorch-gpu", "pytorch-cpu"},
    "matplotlib": {"matplotlib-base"},
    "dcm2niix": {"dcm2niix"},
}


@dataclass(frozen=True)
class RuleDefinition:
    """One rule as written in a Snakefile: its name, file and directive bodies (raw text)."""

    name: str
    path: Path
    line: int
    directives: dict[str, str]
    parent: str | None = None  # use rule <parent> as <name> with:

    def string(self, directive: str) -> str | None:
        """The string literal a directive holds (conda:, script:), or None."""
        match = re.search(r"""["']([^"']+)["']""", self.directives.get(directive, ""))
        return match.group(1) if match else None

    def where(self) -> str:
        return f"rule {self.name} ({self.path.relative_to(PROJECT)}:{self.line})"


def workflow_files() -> list[Path]:
    return [PROJECT / "Snakefile", PROJECT / "workflow" / "Snakefile", *sorted(RULES_DIR.glob("*.smk"))]


def parse_rules(path: Path) -> list[RuleDefinition]:
    """Rules of a Snakefile, read with the layout snakefmt enforces (directives indented once).

    ``use rule A as B with:`` gives B only the directives of its own block here, and A as its
    ``parent``; :func:`all_rules` fills in the rest.
    """
    lines = path.read_text().splitlines()
    rules = []
    for start, line in enumerate(lines):
        header = re.match(r"(?:rule|checkpoint)\s+(\w+)\s*:\s*$", line)
        derived = re.match(r"use rule\s+(\w+)\s+as\s+(\w+)\s+with\s*:\s*$", line)
        if header is None and derived is None:
            continue
        directives: dict[str, list[str]] = {}
        current = None
        indent = None
        for body_line in lines[start + 1 :]:
            if body_line.strip() and not body_line[0].isspace():
                break  # the next top-level statement ends the rule
            match = re.match(r"(\s+)(\w+):(.*)$", body_line)
            if match and (indent is None or len(match.group(1)) == indent):
                indent = len(match.group(1))
                current = match.group(2)
                directives[current] = [match.group(3)]
            elif current is not None:
                directives[current].append(body_line)
        own = {k: "\n".join(v) for k, v in directives.items()}
        if header:
            rules.append(RuleDefinition(header.group(1), path, start + 1, own))
        else:
            rules.append(RuleDefinition(derived.group(2), path, start + 1, own, parent=derived.group(1)))
    return rules


@cache
def all_rules() -> tuple[RuleDefinition, ...]:
    """Every rule of the workflow; one made by ``use rule A as B with:`` has A's directives with
    those of its own block in their place, as Snakemake gives it."""
    rules = {rule.name: rule for path in workflow_files() for rule in parse_rules(path)}
    for name, rule in rules.items():
        if rule.parent is not None:
            parent = rules[rule.parent]
            rules[name] = replace(rule, directives={**parent.directives, **rule.directives})
    return tuple(rules.values())


def rule_ids():
    return [rule.name for rule in all_rules()]


def run_tool(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=PROJECT, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Lint and formatting
# ---------------------------------------------------------------------------------------------


def test_snakemake_lint_reports_nothing():
    result = run_snakemake(["--lint"], timeout=300)
    assert result.returncode == 0, f"snakemake --lint found problems:\n{result.stdout}\n{result.stderr}"


def test_snakefmt_check_passes():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    if not snakefmt.exists():
        snakefmt = shutil.which("snakefmt")
        if snakefmt is None:
            pytest.skip("snakefmt is not installed (pip install snakefmt)")
    order = ["--directive-order", SNAKEFMT_DIRECTIVE_ORDER]
    result = run_tool([str(snakefmt), "--check", *order, *map(str, workflow_files())])
    assert result.returncode == 0, (
        f"snakefmt would reformat; fix with\n  snakefmt {shlex.join(order)} Snakefile workflow/rules/\n"
        + run_tool([str(snakefmt), "--compact-diff", *order, *map(str, workflow_files())]).stdout[-6000:]
    )


# ---------------------------------------------------------------------------------------------
# Rules: log, benchmark
# ---------------------------------------------------------------------------------------------


def test_rule_reader_sees_every_rule_snakemake_sees():
    # Guards the regex reader above: a rule it misses would escape every check below.
    result = run_snakemake(["--list-rules"], timeout=300)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert listed == set(rule_ids())


def test_training_rule_exists():
    assert TRAINING_RULE in rule_ids(), (
        f"rule {TRAINING_RULE} is named in profiles/slurm/config.yaml (set-resources) but no "
        f"Snakefile defines it"
    )
    assert f"{TRAINING_RULE}:" in SLURM_PROFILE.read_text()


@pytest.mark.parametrize("rule", all_rules(), ids=rule_ids())
def test_every_rule_that_makes_files_has_a_log(rule):
    if "output" not in rule.directives:
        pytest.skip(f"{rule.name} is a target rule (no output, nothing runs)")
    assert "log" in rule.directives, f"{rule.where()} has no log: directive"
    # The convention: logs/<stage>/... mirroring the output's wildcards.
    assert "logs/" in rule.directives["log"], f"{rule.where()} logs outside logs/"


def declared_gpus(rule: RuleDefinition) -> int:
    match = re.search(r"\bgpu\s*=\s*(\d+)", rule.directives.get("resources", ""))
    return int(match.group(1)) if match else 0


def long_running_rules() -> list[RuleDefinition]:
    return [
        rule
        for rule in all_rules()
        if rule.path.stem in LONG_RUNNING_STAGES or rule.name == TRAINING_RULE or declared_gpus(rule) > 0
    ]


def test_long_running_stages_have_rules():
    stems = {rule.path.stem for rule in long_running_rules()}
    assert TRAINING_RULE in {rule.name for rule in long_running_rules()}
    assert stems, "no rule found in the long-running stage files"


@pytest.mark.parametrize("rule", long_running_rules(), ids=[r.name for r in long_running_rules()])
def test_long_running_rules_have_a_benchmark(rule):
    assert "benchmark" in rule.directives, (
        f"{rule.where()} runs long ({rule.path.stem} stage) but has no benchmark: directive"
    )
    assert "benchmarks/" in rule.directives["benchmark"]


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------

PROFILES = sorted((PROJECT / "profiles").glob("*/config.yaml"))


@pytest.mark.parametrize("profile", PROFILES, ids=[p.parent.name for p in PROFILES])
def test_profile_plans_the_dag(profile):
    result = run_snakemake(["-n", "--quiet", "rules", "--profile", str(profile.parent)], timeout=300)
    assert result.returncode == 0, f"{profile}:\n{result.stdout}\n{result.stderr}"
    assert TRAINING_RULE in result.stdout


def test_gpu_cap_is_in_the_local_profile_only():
    local = yaml.safe_load((PROJECT / "profiles" / "local" / "config.yaml").read_text())
    slurm = yaml.safe_load(SLURM_PROFILE.read_text())
    assert local["resources"] == {"gpu": 1}
    # On a cluster a global cap would hold the training jobs back one at a time.
    assert "resources" not in slurm
    assert slurm["executor"] == "slurm"
    training = slurm["set-resources"][TRAINING_RULE]
    assert training["gpu"] == 1
    assert training["slurm_partition"] != slurm["default-resources"]["slurm_partition"]


def test_every_gpu_rule_runs_on_the_gpu_partition():
    # A rule that declares gpu=1 but stays on the CPU partition asks CPU nodes for a GPU: SLURM
    # rejects the job ("Requested node configuration is not available").
    slurm = yaml.safe_load(SLURM_PROFILE.read_text())
    gpu_partition = slurm["set-resources"][TRAINING_RULE]["slurm_partition"]
    gpu_rules = [rule for rule in all_rules() if declared_gpus(rule) > 0]
    assert TRAINING_RULE in {rule.name for rule in gpu_rules}
    stray = [
        rule.where()
        for rule in gpu_rules
        if slurm["set-resources"].get(rule.name, {}).get("slurm_partition") != gpu_partition
    ]
    assert not stray, (
        f"declare a GPU but are not sent to the GPU partition in profiles/slurm/config.yaml "
        f"(add `<rule>: {{slurm_partition: *gpu_partition}}` under set-resources): {stray}"
    )


# ---------------------------------------------------------------------------------------------
# Conda environments
# ---------------------------------------------------------------------------------------------


def env_files() -> list[Path]:
    return sorted(ENVS_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class CondaEnv:
    conda: dict[str, str]  # normalized name -> version spec
    pip: dict[str, str]
    editable: tuple[str, ...]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def read_env(path: Path) -> CondaEnv:
    spec = yaml.safe_load(path.read_text())
    conda, pip, editable = {}, {}, []
    for dependency in spec["dependencies"]:
        if isinstance(dependency, dict):
            for requirement in dependency.get("pip", []):
                if requirement.startswith("-e "):
                    editable.append(requirement[3:].strip())
                    continue
                name, _, version = re.match(r"([A-Za-z0-9_.\-\[\]]+)\s*(==)?\s*(.*)", requirement).groups()
                pip[normalize(re.sub(r"\[.*\]", "", name))] = version
        else:
            name, version = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", str(dependency)).groups()
            conda[normalize(name)] = version.strip()
    return CondaEnv(conda, pip, tuple(editable))


# An exact pin: a full version (at least major.minor.patch), nothing else.
FULL_VERSION = r"\d+(?:\.\d+){2,}"


@pytest.mark.parametrize("path", env_files(), ids=[p.name for p in env_files()])
def test_conda_env_parses_and_is_pinned(path):
    spec = yaml.safe_load(path.read_text())
    assert isinstance(spec, dict) and isinstance(spec.get("dependencies"), list), f"{path.name}: no dependencies"
    assert spec.get("channels") and spec["channels"][0] == "conda-forge", f"{path.name}: conda-forge first"
    assert "defaults" not in spec["channels"], f"{path.name}: the defaults channel is not open-licensed"
    for dependency in spec["dependencies"]:
        if isinstance(dependency, dict):
            assert set(dependency) == {"pip"}, f"{path.name}: unexpected {dependency}"
            for requirement in dependency["pip"]:
                assert re.fullmatch(rf"[A-Za-z0-9_.\-]+=={FULL_VERSION}", requirement), (
                    f"{path.name}: pip requirement '{requirement}' is not pinned exactly (name==full version)"
                )
        else:
            assert re.fullmatch(rf"[A-Za-z0-9_.\-]+\s*==?\s*{FULL_VERSION}", str(dependency)), (
                f"{path.name}: conda dependency '{dependency}' is not pinned exactly (name ==full version)"
            )
    env = read_env(path)
    assert "python" in env.conda, f"{path.name}: python is not pinned"


@pytest.mark.parametrize("path", env_files(), ids=[p.name for p in env_files()])
def test_conda_env_refers_to_no_path(path):
    # Snakemake copies an env file elsewhere (.snakemake/conda/, --conda-prefix, a module's user
    # directory) before conda reads it: a path in it (`-e ../..`, `-r`, file:, ./x) resolves against
    # that copy, not against this checkout. The scripts find radfusion in the workflow's src/.
    spec = yaml.safe_load(path.read_text())
    entries = [str(d) for d in spec["dependencies"] if not isinstance(d, dict)]
    entries += [str(r) for d in spec["dependencies"] if isinstance(d, dict) for r in d.get("pip", [])]
    paths = [e for e in entries if e.startswith(("-", ".", "~")) or re.search(r"[/\\@]|file:", e)]
    assert not paths, f"{path.name} refers to paths or URLs: {paths}"
    assert not read_env(path).editable, f"{path.name} installs a package from a path"


def test_every_rule_that_runs_a_script_has_an_existing_conda_env():
    problems = []
    for rule in all_rules():
        if "script" not in rule.directives:
            continue
        env = rule.string("conda")
        if env is None:
            problems.append(f"{rule.where()}: no conda: directive")
        elif not (rule.path.parent / env).resolve().is_file():
            problems.append(f"{rule.where()}: conda env {env} does not exist")
    assert not problems, "\n".join(problems)


def test_every_conda_env_is_used_by_a_rule():
    used = {(rule.path.parent / rule.string("conda")).resolve() for rule in all_rules() if rule.string("conda")}
    unused = [path.name for path in env_files() if path.resolve() not in used]
    assert not unused, f"conda envs no rule uses: {unused}"


def imported_modules(source: str, package: str | None = None) -> set[str]:
    """Dotted module names a Python source imports anywhere (also inside functions), plus modules
    looked up by name (importlib.util.find_spec("x"), importlib.import_module("x")). Relative
    imports resolve against ``package`` (the dotted package the source lives in)."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.level == 0 or package):
            if node.level == 0:
                base = node.module
            else:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base:
                modules.add(base)
                modules.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("find_spec", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            modules.add(node.args[0].value)
    return modules


def package_module_path(module: str) -> Path | None:
    """The file of a radfusion module (radfusion.models -> models/__init__.py), or None."""
    parts = module.split(".")[1:]
    candidate = PACKAGE_DIR.joinpath(*parts)
    if candidate.with_suffix(".py").is_file():
        return candidate.with_suffix(".py")
    if (candidate / "__init__.py").is_file():
        return candidate / "__init__.py"
    return None


def third_party_imports(script: Path) -> set[str]:
    """Top-level names of the non-stdlib packages a script needs, following radfusion's modules."""
    needed: set[str] = set()
    seen: set[Path] = set()
    queue = [script]
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        package = None  # the package a radfusion module (or __init__.py) lives in
        if PACKAGE_DIR in path.parents:
            package = ".".join(path.relative_to(PACKAGE_DIR.parent).parts[:-1])
        for module in imported_modules(path.read_text(), package):
            top = module.split(".")[0]
            if top == "radfusion":
                # importing radfusion.x.y runs radfusion/__init__.py and radfusion/x/__init__.py too
                parts = module.split(".")
                for depth in range(1, len(parts) + 1):
                    found = package_module_path(".".join(parts[:depth]))
                    if found is not None:
                        queue.append(found)
            elif top not in sys.stdlib_module_names and top != "__future__":
                needed.add(top)
    return needed


@cache
def import_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def satisfied_by(import_name: str, env: CondaEnv) -> bool:
    distributions = import_distributions().get(import_name, [import_name])
    for distribution in map(normalize, distributions):
        names = {distribution} | CONDA_FORGE_ALIASES.get(distribution, set())
        if names & set(env.conda) or distribution in env.pip:
            return True
    return False


def rules_with_scripts() -> list[RuleDefinition]:
    return [rule for rule in all_rules() if rule.string("script") and rule.string("conda")]


@pytest.mark.parametrize("rule", rules_with_scripts(), ids=[r.name for r in rules_with_scripts()])
def test_conda_env_lists_every_package_the_rule_imports(rule):
    env_path = (rule.path.parent / rule.string("conda")).resolve()
    if not env_path.is_file():
        pytest.fail(f"{rule.where()}: conda env {rule.string('conda')} does not exist")
    script = (rule.path.parent / rule.string("script")).resolve()
    env = read_env(env_path)
    needed = third_party_imports(script)
    missing = sorted(name for name in needed if not satisfied_by(name, env))
    assert not missing, (
        f"{rule.where()} runs {script.name}, which (with the radfusion modules it uses) imports "
        f"{missing}; {env_path.name} does not list them"
    )


# The line with which a script finds radfusion in the workflow's own src/ (docs/architecture.md):
# snakemake.scriptdir is workflow/scripts of the checkout or module the script was read from.
SRC_ON_PATH = 'sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))'


def scripts() -> list[Path]:
    return sorted((PROJECT / "workflow" / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", scripts(), ids=[s.name for s in scripts()])
def test_script_puts_the_workflows_src_on_the_path_before_importing_radfusion(script):
    lines = script.read_text().splitlines()
    imports = [i for i, line in enumerate(lines) if re.match(r"\s*(from|import) radfusion\b", line)]
    if not imports:
        pytest.skip(f"{script.name} does not import radfusion")
    inserts = [i for i, line in enumerate(lines) if line.startswith(SRC_ON_PATH)]
    assert inserts and inserts[0] < imports[0], (
        f"{script.name} imports radfusion without first putting the workflow's src/ on sys.path; "
        f"start it with\n  {SRC_ON_PATH}"
    )
    assert (PROJECT / "workflow" / "scripts").resolve().parents[1] / "src" / "radfusion" == PACKAGE_DIR


def test_reading_the_workflow_imports_no_radfusion():
    # The Snakefiles run where Snakemake runs, which need not have radfusion installed (a module
    # in another project, --sdm conda): only the jobs' scripts import it.
    offenders = [
        str(path.relative_to(PROJECT))
        for path in workflow_files()
        if re.search(r"^\s*(from|import)\s+radfusion\b", path.read_text(), re.MULTILINE)
    ]
    assert not offenders, f"import radfusion while the workflow is read: {offenders}"


def test_import_reader_follows_the_package(tmp_path):
    # A script that imports only radfusion still needs what those modules import, including
    # packages looked up by name (synth finds nilearn's bundled template with find_spec).
    script = tmp_path / "script.py"
    script.write_text("import sys\nfrom radfusion.io import load_volume\nfrom radfusion.synth import load_template\n")
    needed = third_party_imports(script)
    assert {"nibabel", "numpy", "nilearn"} <= needed
    assert "sys" not in needed and "radfusion" not in needed


# ---------------------------------------------------------------------------------------------
# Config documentation
# ---------------------------------------------------------------------------------------------


def schema_keys(properties: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the schema's leaf keys (an object with properties is walked into)."""
    keys = []
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if isinstance(spec, dict) and spec.get("properties"):
            keys.extend(schema_keys(spec["properties"], f"{path}."))
        else:
            keys.append(path)
    return keys


def documented_key_patterns(text: str) -> list[re.Pattern]:
    """Backticked dotted names in config/README.md; `<placeholder>` matches any one key."""
    patterns = []
    for token in re.findall(r"`([A-Za-z_<>][\w.<>-]*)`", text):
        regex = ".".join("[^.]+" if re.fullmatch(r"<\w+>", part) else re.escape(part) for part in token.split("."))
        patterns.append(re.compile(regex))
    return patterns


def test_config_readme_documents_every_schema_key():
    assert CONFIG_README.is_file(), "config/README.md is missing"
    schema = yaml.safe_load(SCHEMA.read_text())
    keys = schema_keys(schema["properties"])
    patterns = documented_key_patterns(CONFIG_README.read_text())
    undocumented = [key for key in keys if not any(p.fullmatch(key) for p in patterns)]
    assert keys and not undocumented, f"config/README.md does not document: {undocumented}"
