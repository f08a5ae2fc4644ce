"""The report of ``bench.calibration``: the BENCHMARKS.md section and the compact raw rows."""

from __future__ import annotations

TESTS = ("mlp_match", "embedding_dims", "head_dims", "mlp_up", "block_units", "combined")


def _model(shape: dict) -> str:
    """One model of a synthetic pair in a few words, e.g. ``llama h64 L4 H8/kv4 I176 V1024 tied A-llama normal``."""
    return (
        f"{shape['model_type']} h{shape['hidden']} L{shape['layers']} H{shape['heads']}/kv{shape['kv_heads']} "
        f"I{shape['intermediate']} V{shape['vocab_size']}{' tied' if shape['tied'] else ''} {shape['tokenizer']} "
        f"{shape['init']}"
    )


def compact_rows(rows: list[dict]) -> dict:
    """The raw rows as one line each (the JSON stays small): ``columns`` names the ``|``-separated
    fields; a test that did not run is empty."""
    columns = ["a", "b", *(["scheme", "shared_probes"] if rows and "scheme" in rows[0] else []), *TESTS]
    lines = []
    for r in rows:
        fields = [
            _model(r["a"]) if isinstance(r["a"], dict) else r["a"],
            _model(r["b"]) if isinstance(r["b"], dict) else r["b"],
        ]
        if "scheme" in columns:
            fields += [r["scheme"], str(r["shared_probes"])]
        fields += [str(r["log10_p"][t]) if t in r["log10_p"] else "" for t in TESTS]
        lines.append("|".join(fields))
    return {"columns": "|".join(columns), "rows": lines}


def parse_compact_rows(raw: dict) -> list[dict]:
    """The rows of :func:`compact_rows` back as dicts (models as their one-line descriptions, and
    the log10 p of the tests that ran) - to pool a later run's fresh pairs with an earlier one's."""
    columns = raw["columns"].split("|")
    rows = []
    for line in raw["rows"]:
        fields = dict(zip(columns, line.split("|")))
        row: dict = {"a": fields["a"], "b": fields["b"]}
        if "scheme" in fields:
            row.update(scheme=fields["scheme"], shared_probes=int(fields["shared_probes"]))
        row["log10_p"] = {t: float(fields[t]) for t in TESTS if fields.get(t, "") != ""}
        rows.append(row)
    return rows


def _cell(entry: dict, key: str) -> str:
    value = entry.get(key)
    return "–" if value is None else f"{value['k']}/{value['n']} ({value['rate']:.2%})"


def markdown(result: dict, command: str) -> str:
    env = result["environment"]
    lines = [
        "## Calibration of the independence tests on every architecture variant (issue 18)",
        "",
        f"Command: `{command}`  (commit {env['commit']}, {env['date']}; {result['seconds']} s; "
        f"batteries from {result['mode']})",
        "",
        "Held out: nothing in the battery was tuned on this set or on zoo B; zoo B contributes only tokenizer "
        "files (cross-tokenizer group), its cross-family pairs (calibration) and its same-family pairs (power). "
        "Synthetic groups: every pair is two fresh initialisations of its own (independent samples); trained and "
        "zoo groups reuse each model in many pairs (clustered: KS assumes independent samples, so it is only "
        "valid on the matching rows).",
        "",
        "| group | pairs | combined FPR α=0.01 | combined FPR α=0.001 | ≥ 200 pairs | KS exact nulls ≥ 0.01 |",
        "|---|---|---|---|---|---|",
    ]
    for name, group in result["groups"].items():
        combined, ok = group["stats"].get("combined", {}), group["bars"]
        lines.append(
            f"| {name} | {group['pairs']} | {_cell(combined, 'fpr_0.01')} | {_cell(combined, 'fpr_0.001')} | "
            f"{ok.get('pairs_ok', '–')} | {ok.get('ks_exact_nulls_ok', '(clustered)')} |"
        )
    b = result["bars"]
    lines += [
        "",
        f"Bars: combined FPR ≤ 1 % at α = 0.01 and ≤ 0.2 % at α = 0.001 on every variant group: "
        f"{b['variant_groups_combined_fpr_ok']}; ≥ 200 pairs per variant group: {b['variant_groups_200_pairs']}; "
        f"KS not rejected at 0.01 for embedding_dims, head_dims, mlp_up on every independent group: "
        f"{b['ks_exact_nulls_not_rejected']}; groups missing a bar: {', '.join(b['failing']) or 'none'}.",
    ]
    lines += [
        "",
        "| group | test | n | KS statistic | KS p | FPR α=0.01 | FPR α=0.001 | min log10 p | non-finite |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, group in result["groups"].items():
        for test, e in group["stats"].items():
            lines.append(
                f"| {name} | {test} | {e['n']} | {e.get('ks_statistic', '–')} | {e.get('ks_p', '–')} | "
                f"{_cell(e, 'fpr_0.01')} | {_cell(e, 'fpr_0.001')} | {e['min_log10_p']} | {e['non_finite']} |"
            )
    if "power" in result:
        p = result["power"]
        lines += [
            "",
            f"**Power.** {p['pairs']} same-family pairs of zoo A and zoo B: weakest combined log10 p = "
            f"{p['max_combined_log10_p']} ({p['weakest_pair']}); all < −12: {p['all_below_minus_12']}; "
            f"non-finite values: {p['non_finite']}.",
        ]
    for prefix, zoo in result.get("zoos", {}).items():
        if not zoo["current_code"]:
            lines.append(
                f"\nZoo {prefix} ({zoo['folder']}) is the cached build (recipe hash {str(zoo['recipe_hash'])[:12]}), "
                "made by older zoo code than this commit; it was used as it is."
            )
    for name, group in result["groups"].items():
        if "training" in group:
            t = group["training"]
            lines.append(
                f"\n**{name.split(' (')[0]}**: {t['models']} models, {t['steps']} steps ({t['tokens_seen']} tokens), "
                f"own corpus slice of {t['train_tokens_min_mean_max'][1]:.0f} tokens; held-out loss "
                f"{t['initial_heldout_loss_min_mean_max'][1]} → {t['final_heldout_loss_min_mean_max'][1]} (mean; "
                f"final min–max {t['final_heldout_loss_min_mean_max'][0]}–{t['final_heldout_loss_min_mean_max'][2]}); "
                f"{t['seconds_per_model_min_mean_max'][1]} s per model on one core."
            )
    timing = "; ".join(
        f"{k}: {v['worker_seconds_per_pair']} s/pair" for k, v in result["timing"].items() if isinstance(v, dict)
    )
    lines += ["", f"Seconds per pair (one worker, capture included): {timing}."]
    return "\n".join(lines)
