"""Readers for the files under deploy/ (Dockerfile, compose.yaml, systemd units, env files) and
the translation of their command lines to this machine (the venv's pedigree, a tmp data folder, a
free port), shared by tests/test_deploy.py and tests/test_deploy_entrypoints.py."""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
SYSTEMD = DEPLOY / "systemd"
ENV_EXAMPLE = DEPLOY / "pedigree.env.example"

# where the deploy files put things, and what stands for them here
IMAGE_DATA = "/data"
UNIT_DATA = "/var/lib/pedigree"
UNIT_PEDIGREE = "/opt/pedigree/bin/pedigree"
DEPLOYED_PORT = "8000"
PEDIGREE_HERE = str(Path(sys.executable).with_name("pedigree"))


@dataclass
class Stage:
    """One ``FROM`` stage of a Dockerfile: its base, name and instructions (keyword, arguments)."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in stage {self.name}"
        return found[-1]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, ``\\`` continuations joined."""
    instructions, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are skipped, as Docker does
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults (before the first FROM) and the stages, in order."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=expand(words[0], global_args), name=name))
        elif stages:
            stages[-1].instructions.append((keyword, args))
        elif keyword == "ARG":
            key, _, value = args.partition("=")
            global_args[key] = value
    return global_args, stages


def stage_args(stage: Stage) -> dict[str, str]:
    """A stage's own ARG defaults."""
    return dict(arg.partition("=")[::2] for arg in stage.all("ARG"))


def expand(value: str, variables: dict[str, str]) -> str:
    """``${NAME}`` / ``$NAME`` replaced from ``variables`` (Dockerfile ARG/ENV substitution)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], value)


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) CMD / HEALTHCHECK CMD / VOLUME argument."""
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), args
    return parsed


def healthcheck(stage: Stage) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options (``--interval`` ...) and its exec-form command."""
    options, _, command = stage.last("HEALTHCHECK").partition(" CMD ")
    flags = dict(option.lstrip("-").split("=", 1) for option in options.split())
    return flags, exec_form(command)


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}`` / ``${NAME}`` interpolation (what ``docker compose`` does)."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        return env.get(name) or (default if default is not None else "")

    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", one, value)


def unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file: section -> (key, value) in order (keys may repeat, unlike INI)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: {line!r} before any section"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(path: Path, section: str, key: str) -> list[str]:
    return [value for k, value in unit(path).get(section, []) if k == key]


def unit_environment(path: Path) -> dict[str, str]:
    """The ``Environment=NAME=VALUE`` lines of a unit's [Service]."""
    return dict(entry.split("=", 1) for entry in unit_values(path, "Service", "Environment"))


def env_file(path: Path) -> dict[str, str]:
    """A KEY=VALUE file as both docker's ``env_file`` and systemd's ``EnvironmentFile`` read it."""
    pairs = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def here(argv: list[str], home: Path, port: int) -> list[str]:
    """A deployed command line as it runs on this machine: the venv's pedigree, ``home`` for the
    data folder, ``port`` for 8000 and loopback for all interfaces; nothing else changes."""
    swap = {
        UNIT_PEDIGREE: PEDIGREE_HERE,
        UNIT_DATA: str(home),
        IMAGE_DATA: str(home),
        DEPLOYED_PORT: str(port),
        "0.0.0.0": "127.0.0.1",
    }
    first = PEDIGREE_HERE if argv[0] == "pedigree" else swap.get(argv[0], argv[0])
    return [first, *(swap.get(word, word) for word in argv[1:])]


def here_env(deployed: dict[str, str], home: Path) -> dict[str, str]:
    """Environment values with the deployed data folder swapped for ``home``."""
    swap = {UNIT_DATA: str(home), IMAGE_DATA: str(home)}
    return {key: swap.get(value, value) for key, value in deployed.items()}


def healthcheck_here(command: list[str], port: int) -> list[str]:
    """The image's health probe (``python -c ...`` on 127.0.0.1:8000) against ``port`` here."""
    assert command[0] == "python" and command[1] == "-c", command
    code = command[2]
    assert f"127.0.0.1:{DEPLOYED_PORT}/healthz" in code, code
    return [sys.executable, "-c", code.replace(f"127.0.0.1:{DEPLOYED_PORT}", f"127.0.0.1:{port}"), *command[3:]]


def exec_start(path: Path) -> list[str]:
    """A unit's single ``ExecStart=`` command line, split as systemd does (no prefixes used)."""
    (line,) = unit_values(path, "Service", "ExecStart")
    assert line[:1] not in "-@:+!", f"{path.name}: ExecStart prefixes are not expected: {line}"
    return shlex.split(line)
