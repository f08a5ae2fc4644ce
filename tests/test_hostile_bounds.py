"""Bounds from what is read, not what is claimed (issue 14, "Deliver 4"), through the real CLI.

A malicious Hub on 127.0.0.1 (:mod:`malicious_hub`) serves a valid tiny Llama beside a hostile
repo; ``pedigree crawl`` runs in a subprocess.  Each test asserts that the run ends by itself
within a bound, that the child's peak resident memory stays under a bound, that no traceback
is printed, that the valid neighbour is indexed and that the hostile repo gets a one-line reason.
Local cases (zero-width heads, a two-million-dimension shape, escape sequences in a folder name)
run ``pedigree ingest`` the same way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from bounded_cli import BoundedRun, run_cli_bounded
from malicious_hub import MaliciousHub, RemoteFile
from safetensors.torch import load_file, save_file

from pedigree.errors import MAX_ERROR_CHARS

NEIGHBOUR = "llama-lab/tiny-llama-s1"
MAX_RSS = 1536 * 2**20  # the CLI with torch, DuckDB and FAISS loaded peaks near 600 MiB on a crawl of tiny models
TIME_BOUND = 90.0  # seconds; each run below takes 5-25 s on 2 cores
FAST_DEADLINES = {"PEDIGREE_REQUEST_DEADLINE": "1", "PEDIGREE_MODEL_DEADLINE": "4"}


def _zoo_files(small_zoo: Path, repo: str = NEIGHBOUR) -> dict[str, RemoteFile]:
    return {p.name: RemoteFile.real(p.read_bytes()) for p in sorted((small_zoo / repo).iterdir()) if p.is_file()}


def _small_files(small_zoo: Path, config: dict) -> dict[str, RemoteFile]:
    """The neighbour's tokenizer files with another ``config.json`` (the weights are added by the caller)."""
    files = {n: f for n, f in _zoo_files(small_zoo).items() if n != "model.safetensors" and n != "README.md"}
    files["config.json"] = RemoteFile.real(json.dumps(config).encode())
    return files


def _llama_config(small_zoo: Path, **fields: object) -> dict:
    config = json.loads((small_zoo / NEIGHBOUR / "config.json").read_text())
    config.update(fields)
    return config


def _llama_tensors(hidden: int, heads: int, kv: int, head_dim: int, mlp: int, layers: int, vocab: int) -> dict:
    shapes = {
        "model.embed_tokens.weight": [vocab, hidden],
        "lm_head.weight": [vocab, hidden],
        "model.norm.weight": [hidden],
    }
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": [heads * head_dim, hidden],
            p + "self_attn.k_proj.weight": [kv * head_dim, hidden],
            p + "self_attn.v_proj.weight": [kv * head_dim, hidden],
            p + "self_attn.o_proj.weight": [hidden, heads * head_dim],
            p + "mlp.gate_proj.weight": [mlp, hidden],
            p + "mlp.up_proj.weight": [mlp, hidden],
            p + "mlp.down_proj.weight": [hidden, mlp],
            p + "input_layernorm.weight": [hidden],
            p + "post_attention_layernorm.weight": [hidden],
        }
    return shapes


def _crawl(hub: MaliciousHub, home: Path, env: dict[str, str] | None = None) -> tuple[dict[str, dict], BoundedRun]:
    run = run_cli_bounded(
        ["crawl", "--endpoint", hub.url, "--home", str(home), "--json"], env=env, timeout=TIME_BOUND, kill_rss=MAX_RSS
    )
    assert run.killed is None, f"{run.killed}; stderr: {run.stderr[-2000:]}"
    assert run.returncode == 0, run.stderr[-2000:]
    print(f"crawl: peak RSS {run.peak_rss / 2**20:.0f} MiB, {run.seconds:.1f} s")
    return {r["id"]: r for r in json.loads(run.stdout)["repos"]}, run


def _wide_head(small_zoo: Path) -> dict[str, RemoteFile]:
    """One attention head 32,768 wide: the sample of q is the whole 4 GiB matrix (16 GiB claimed)."""
    width = 32768
    config = _llama_config(
        small_zoo,
        hidden_size=width,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=width,
        intermediate_size=1,
        num_hidden_layers=1,
    )
    files = _small_files(small_zoo, config)
    files["model.safetensors"] = RemoteFile.virtual(_llama_tensors(width, 1, 1, width, 1, 1, config["vocab_size"]))
    return files


def _huge_plan(small_zoo: Path) -> dict[str, RemoteFile]:
    """A GPT-2 whose transposed matrices are read whole: each within the per-tensor cap, 26 layers
    of them 17.9 GiB."""
    gpt2 = json.loads((small_zoo / "gpt-lab/tiny-gpt2/config.json").read_text())
    hidden, inner, layers = 4096, 16384, 26
    gpt2.update(n_embd=hidden, n_head=32, n_inner=inner, n_layer=layers)
    files = {n: f for n, f in _zoo_files(small_zoo, "gpt-lab/tiny-gpt2").items() if n != "model.safetensors"}
    files["config.json"] = RemoteFile.real(json.dumps(gpt2).encode())
    shapes = {"wte.weight": [gpt2["vocab_size"], hidden], "wpe.weight": [gpt2["n_positions"], hidden]}
    shapes |= {"ln_f.weight": [hidden], "ln_f.bias": [hidden]}
    for i in range(layers):
        p = f"h.{i}."
        shapes |= {p + f"{n}.{w}": [hidden] for n in ("ln_1", "ln_2") for w in ("weight", "bias")}
        shapes |= {
            p + "attn.c_attn.weight": [hidden, 3 * hidden],
            p + "attn.c_attn.bias": [3 * hidden],
            p + "attn.c_proj.weight": [hidden, hidden],
            p + "attn.c_proj.bias": [hidden],
            p + "mlp.c_fc.weight": [hidden, inner],
            p + "mlp.c_fc.bias": [inner],
            p + "mlp.c_proj.weight": [inner, hidden],
            p + "mlp.c_proj.bias": [hidden],
        }
    files["model.safetensors"] = RemoteFile.virtual(shapes)
    return files


@pytest.fixture(scope="module")
def claims(
    small_zoo: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[MaliciousHub, dict[str, dict], BoundedRun]:
    """One crawl of a Hub serving, beside the valid neighbour, repos whose claims are hostile."""
    hub = MaliciousHub()
    hub.add("hostile/wide-head", _wide_head(small_zoo))
    hub.add(NEIGHBOUR, _zoo_files(small_zoo))
    hub.add("hostile/huge-plan", _huge_plan(small_zoo))
    hub.add("hostile/redirect-loop", _zoo_files(small_zoo), redirect="loop")
    hub.add("hostile/redirect-file", _zoo_files(small_zoo), redirect="file")
    with hub:
        repos, run = _crawl(hub, tmp_path_factory.mktemp("claims"))
    return hub, repos, run


@pytest.fixture(scope="module")
def trickles(
    small_zoo: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[MaliciousHub, dict[str, dict], BoundedRun]:
    """One crawl (deadlines of 1 s per request, 4 s per model) of a Hub whose weight files answer
    one byte every half second - their body, or their status line and headers."""
    hub = MaliciousHub(trickle_interval=0.5)
    hub.add("hostile/trickle-body", _zoo_files(small_zoo), trickle="body")
    hub.add(NEIGHBOUR, _zoo_files(small_zoo))
    hub.add("hostile/trickle-headers", _zoo_files(small_zoo), trickle="headers")
    with hub:
        repos, run = _crawl(hub, tmp_path_factory.mktemp("trickles"), env=FAST_DEADLINES)
    return hub, repos, run


@pytest.mark.parametrize("crawl", ["claims", "trickles"])
def test_the_crawl_ends_bounded_and_indexes_the_neighbour(crawl: str, request: pytest.FixtureRequest):
    _, repos, run = request.getfixturevalue(crawl)
    assert run.peak_rss < MAX_RSS
    assert "Traceback" not in run.stdout + run.stderr
    assert repos[NEIGHBOUR]["status"] == "indexed", repos[NEIGHBOUR]
    for report in repos.values():
        assert "internal error" not in (report["reason"] or "")
        assert len(report["reason"] or "") <= MAX_ERROR_CHARS


def test_one_head_32768_wide_is_refused_before_its_matrix_is_read(claims):
    """The old budget (1.05 x the 16 GiB the server claims) let the sampler read the 4 GiB q."""
    hub, repos, _ = claims
    wide = repos["hostile/wide-head"]
    assert wide["status"] == "failed"
    assert "too wide to sample" in wide["reason"] and "4.0 GiB" in wide["reason"], wide["reason"]
    assert hub.repos["hostile/wide-head"].sent < 2**20  # the header and small files: no weight was read
    assert wide["bytes_read"] < 2**20


def test_a_model_whose_read_plan_is_over_the_cap_is_refused(claims):
    hub, repos, _ = claims
    huge = repos["hostile/huge-plan"]
    assert huge["status"] == "failed"
    assert "one model may cost" in huge["reason"], huge["reason"]
    assert hub.repos["hostile/huge-plan"].sent < 2**20


@pytest.mark.parametrize(("repo", "said"), [("loop", "redirected too many times"), ("file", "not http(s)")])
def test_redirect_loops_and_file_urls_are_reasons_not_retries(claims, repo: str, said: str):
    _, repos, _ = claims
    bad = repos[f"hostile/redirect-{repo}"]
    assert bad["status"] == "failed", bad  # not "retry": neither is a transient fault
    assert said in bad["reason"], bad["reason"]


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_trickling_server_cannot_hold_the_crawl(trickles, where: str):
    """No socket read ever times out (a byte every half second), yet the model's requests end at
    their deadline: all of them, retries included, within the model's 4 s and the backoff."""
    hub, repos, _ = trickles
    slow = repos[f"hostile/trickle-{where}"]
    assert slow["status"] == "retry", slow  # the server's fault: taken up again by the next run
    assert "deadline" in slow["reason"], slow["reason"]
    asked = hub.repos[f"hostile/trickle-{where}"].asked
    assert asked[-1] - asked[0] < 15  # a 64 KiB header at 2 bytes/s would take nine hours


ESCAPED_NAME = "ev\x1b[31mil\x1b]0;pwned\x07[bold]x"


def _zero_width_heads(small_zoo: Path, folder: Path) -> None:
    """A GPT-2 whose config (n_head 128 of 64 dims) and tensors agree on heads 0 wide: it passes
    every shape check (it used to fail with ``internal error: ZeroDivisionError``)."""
    shutil.copytree(small_zoo / "gpt-lab/tiny-gpt2", folder)
    config = json.loads((folder / "config.json").read_text())
    config["n_head"] = 128
    (folder / "config.json").write_text(json.dumps(config))
    tensors = load_file(str(folder / "model.safetensors"))
    for i in range(config["n_layer"]):
        p = f"transformer.h.{i}.attn."
        tensors |= {p + "c_attn.weight": torch.zeros(64, 0), p + "c_attn.bias": torch.zeros(0)}
        tensors[p + "c_proj.weight"] = torch.zeros(0, 64)
    save_file(tensors, str(folder / "model.safetensors"))


def _long_shape(small_zoo: Path, folder: Path) -> None:
    """q_proj with a shape of two million 1s (its error was a 6 MB string stored in DuckDB)."""
    shutil.copytree(small_zoo / NEIGHBOUR, folder)
    tensors = load_file(str(folder / "model.safetensors"))
    long_shaped = "model.layers.0.self_attn.q_proj.weight"
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for key in sorted(tensors):
        blob = tensors[key].contiguous().numpy().tobytes()
        shape = list(tensors[key].shape)
        if key == long_shaped:
            blob, shape = blob[:4], [1] * 2_000_000
        header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    (folder / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


@pytest.fixture(scope="module")
def local(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``pedigree ingest`` (text output) of a folder holding the valid neighbour, a model with
    zero-width heads, one with a two-million-dimension shape and the neighbour again under a folder
    name full of escape sequences; then ``pedigree models`` as text and as JSON."""
    root = tmp_path_factory.mktemp("local")
    home = root / "home"
    shutil.copytree(small_zoo / NEIGHBOUR, root / "models" / NEIGHBOUR)
    _zero_width_heads(small_zoo, root / "models/hostile/zero-heads")
    _long_shape(small_zoo, root / "models/hostile/long-shape")
    shutil.copytree(small_zoo / NEIGHBOUR, root / "models/org" / ESCAPED_NAME)
    runs = {
        "ingest": run_cli_bounded(
            ["ingest", str(root / "models"), "--home", str(home)], timeout=TIME_BOUND, kill_rss=MAX_RSS
        ),
        "models": run_cli_bounded(
            ["models", "--home", str(home)], env={"COLUMNS": "200"}, timeout=TIME_BOUND, kill_rss=MAX_RSS
        ),
        "json": run_cli_bounded(["models", "--home", str(home), "--json"], timeout=TIME_BOUND, kill_rss=MAX_RSS),
    }
    for name, run in runs.items():
        assert run.killed is None, f"{name}: {run.killed}"
        assert run.returncode == 0, f"{name}: {run.stderr[-2000:]}"
        print(f"{name}: peak RSS {run.peak_rss / 2**20:.0f} MiB, {run.seconds:.1f} s")
    return {**runs, "stored": {m["id"]: m for m in json.loads(runs["json"].stdout)["models"]}}


def test_local_ingest_ends_bounded_and_indexes_the_neighbour(local):
    for name in ("ingest", "models", "json"):
        run = local[name]
        assert run.peak_rss < MAX_RSS
        assert "Traceback" not in run.stdout + run.stderr
    stored = local["stored"]
    assert stored[NEIGHBOUR]["status"] == "indexed"
    assert all("internal error" not in (m["error"] or "") for m in stored.values())


def test_zero_width_heads_are_a_reason(local):
    model = local["stored"]["hostile/zero-heads"]
    assert model["status"] == "failed"
    assert "nothing to sample (head width = 0)" in model["error"], model["error"]


def test_an_error_about_a_two_million_dimension_shape_is_capped(local):
    """The reason names the tensor, in at most MAX_ERROR_CHARS characters - stored and shown."""
    model = local["stored"]["hostile/long-shape"]
    assert model["status"] == "failed"
    assert 0 < len(model["error"]) <= MAX_ERROR_CHARS
    assert len(local["models"].stdout) < 20 * MAX_ERROR_CHARS
    assert len(local["ingest"].stdout) < 20 * MAX_ERROR_CHARS


def test_escape_sequences_in_a_folder_name_are_shown_not_obeyed(local):
    """An OSC title sequence and a colour in a folder name: text output writes them as \\x1b (and
    ``[bold]`` as itself, not markup); JSON output stays JSON, the id intact."""
    for name in ("ingest", "models"):
        output = local[name].stdout + local[name].stderr
        assert "\x1b" not in output and "\x07" not in output
    assert "ev\\x1b[31mil\\x1b]0;pwned" in local["models"].stdout
    assert "[bold]x" in local["models"].stdout
    assert f"org/{ESCAPED_NAME}" in local["stored"]
    assert local["stored"][f"org/{ESCAPED_NAME}"]["status"] == "indexed"
