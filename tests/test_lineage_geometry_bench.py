"""bench.lineage_geometry's table says what its measurements say."""

from bench.lineage_geometry import markdown


def test_the_table_reports_spreads_counts_and_every_misplaced_parent():
    data = {
        "chain_steps": [{"child": "f/c", "fresh": -0.2, "shared": 0.7}, {"child": "f/d", "fresh": 0.4, "shared": 0.8}],
        "siblings": [{"pair": ["f/a", "f/b"], "fresh_as_child": -0.5, "shared": 0.1}],
        "parent_ranks": [
            {"child": "f/a", "parent_rank": 1, "of": 4, "nearest": "f/root"},
            {"child": "f/cpt", "parent_rank": 10, "of": 10, "nearest": "f/a"},
            {"child": "f/ext", "parent_rank": 2, "of": 5, "nearest": "f/web"},
        ],
    }
    data["parent_ranks"][2]["as_child_of_nearer"] = [{"model": "f/web", "fresh": -0.031, "shared": 0.5712}]
    result = {"datasets": {"zoo A": data}, "environment": {"commit": "abc", "date": "today"}}
    table = markdown(result, "python -m bench.lineage_geometry --size full")
    row = next(line for line in table.splitlines() if line.startswith("| zoo A"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    misplaced = "f/cpt (rank 10 of 10), f/ext (rank 2 of 5; as a child of f/web: fresh -0.03, shared 0.57)"
    assert cells == ["zoo A", "2", "-0.20 / 0.10 / 0.40", "1", "0.10 / 0.10 / 0.10", "3", "1", misplaced]
    assert "python -m bench.lineage_geometry --size full" in table


def test_descendants_follow_every_generation_and_merges():
    from bench.lineage_geometry import descendants

    parents = {"r": [], "a": ["r"], "a-a": ["a"], "a-a-a": ["a-a"], "b": ["r"], "m": ["a-a", "b"]}
    assert descendants(parents, "a") == {"a-a", "a-a-a", "m"}
    assert descendants(parents, "b") == {"m"}
    assert descendants(parents, "a-a-a") == set()


def test_centrality_finds_the_fine_tune_that_stands_where_the_base_stands():
    import torch

    from bench.lineage_geometry import centrality, centrality_row

    eye = torch.eye(5, dtype=torch.float64)

    def update(axis: int, size: float = 1.0) -> torch.Tensor:  # siblings share a direction: cos 0.36
        return size * (0.6 * eye[4] + 0.8 * eye[axis])

    # the base at the origin; three fine-tunes, and a fourth barely trained
    samples = {"b": torch.zeros(5, dtype=torch.float64), "x": update(0), "y": update(1), "z": update(2)}
    samples["w"] = update(3, 0.05)
    cos_b, distance_b = centrality("b", ["x", "y", "z"], samples)
    assert abs(cos_b - 0.36) < 1e-9 and abs(distance_b - 1.0) < 1e-9
    cos_x, _ = centrality("x", ["y", "z"], samples)
    assert abs(cos_x - 0.5) < 1e-9  # from a sibling, the others share the way back to the base
    row = centrality_row("b", ["x", "y", "z", "w"], samples)
    assert row["base_centrality"] == [0.36, 1.0]
    assert [m["model"] for m in row["as_central"]] == ["w"]  # the barely trained one stands at the base
    samples["odd"] = torch.zeros(3, dtype=torch.float64)
    assert centrality("odd", ["x", "y"], samples) is None  # another shape: not comparable


def test_the_centrality_table_names_each_member_as_central_as_its_base():
    centre = {"base": "f/root", "members": 4, "base_centrality": [0.36, 1.0], "as_central": []}
    centre["as_central"].append({"model": "f/w", "centrality": [0.3381, 0.9831]})
    data = {"chain_steps": [], "siblings": [], "parent_ranks": [], "centres": [centre]}
    table = markdown({"datasets": {"zoo A": data}, "environment": {"commit": "abc", "date": "today"}}, "cmd")
    assert "| zoo A | f/root | 4 | 0.36 / 1 | f/w (0.34 / 0.983) |" in table.splitlines()


def test_growth_signals_count_true_edges_and_sibling_pairs_apart():
    from types import SimpleNamespace

    from bench.lineage_geometry import growth_signals

    parents = {"f/root": [], "f/a": ["f/root"], "f/b": ["f/root"]}
    norms = {"f/root": 1.0, "f/a": 1.1, "f/b": 0.9}
    pk = {m: i for i, m in enumerate(sorted(parents))}
    records = {
        i: SimpleNamespace(pk=i, id=m, card={}, created_at=None, weight_stats={"attention_norm": norms[m]})
        for m, i in pk.items()
    }
    grown = {frozenset((pk["f/root"], pk["f/a"])): pk["f/a"], frozenset((pk["f/a"], pk["f/b"])): pk["f/a"]}
    evidence = {key: SimpleNamespace(detail={"grown_child": child}) for key, child in grown.items()}
    found = growth_signals(parents, ["f/a", "f/b"], {"f/root": ["f/a", "f/b"]}, pk, records, evidence)
    edges, siblings = found["true_edges"], found["sibling_pairs"]
    assert (edges["pairs"], edges["growth_to_child"], edges["growth_to_parent"], edges["norm_grew"]) == (2, 1, 0, 1)
    assert (siblings["pairs"], siblings["growth_fired"]) == (1, 1)  # a parent claim between two siblings
    assert abs(siblings["log_norm"][0] - 0.20067) < 1e-4  # |log(0.9 / 1.1)|
