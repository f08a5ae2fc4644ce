"""bench.lineage_geometry's table says what its measurements say."""

from bench.lineage_geometry import markdown


def test_the_table_reports_spreads_counts_and_every_misplaced_parent():
    data = {
        "chain_steps": [{"child": "f/c", "fresh": -0.2, "shared": 0.7}, {"child": "f/d", "fresh": 0.4, "shared": 0.8}],
        "siblings": [{"pair": ["f/a", "f/b"], "fresh_as_child": -0.5, "shared": 0.1}],
        "parent_ranks": [
            {"child": "f/a", "parent_rank": 1, "of": 4, "nearest": "f/root"},
            {"child": "f/cpt", "parent_rank": 10, "of": 10, "nearest": "f/a"},
        ],
    }
    result = {"datasets": {"zoo A": data}, "environment": {"commit": "abc", "date": "today"}}
    table = markdown(result, "python -m bench.lineage_geometry --size full")
    row = next(line for line in table.splitlines() if line.startswith("| zoo A"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["zoo A", "2", "-0.20 / 0.10 / 0.40", "1", "0.10 / 0.10 / 0.10", "2", "1", "f/cpt (rank 10 of 10)"]
    assert "python -m bench.lineage_geometry --size full" in table


def test_descendants_follow_every_generation_and_merges():
    from bench.lineage_geometry import descendants

    parents = {"r": [], "a": ["r"], "a-a": ["a"], "a-a-a": ["a-a"], "b": ["r"], "m": ["a-a", "b"]}
    assert descendants(parents, "a") == {"a-a", "a-a-a", "m"}
    assert descendants(parents, "b") == {"m"}
    assert descendants(parents, "a-a-a") == set()
