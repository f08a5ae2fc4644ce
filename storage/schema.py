"""The DuckDB schema and its migrations.

``MIGRATIONS`` is an append-only list: migration N turns schema N-1 into schema N and is applied
once, inside a transaction, recorded in ``schema_migrations``.  Opening a database written by a
newer pedigree (a version this code does not know) is refused rather than guessed at.

Tables (schema 1):

- ``models``: one row per model id - revision, where it was read from, status
  (``indexed`` / ``failed`` / ``unsupported``) with the error, architecture, config, tokenizer
  hash, shape summary, the model card's front matter and the creation time.
- ``fingerprints``: one row per vector - ``kind`` is ``model``, ``layer`` (``layer`` = block
  index), ``embedding``, ``head`` or ``block_sig`` (an embedding-free block signature, one per
  block, ``layer`` = block index; a kind added without a migration: the column is free text);
  ``version`` is the fingerprint recipe, which names the block-signature recipe too;
  ``vector_id`` is the id the FAISS indexes use; ``generation`` is the store generation that
  wrote it.
- ``vector_tombstones``: vector ids removed at a generation, so FAISS indexes can catch up
  incrementally.
- ``meta``: key/value, holding the store ``generation`` (bumped by every change to vectors).

Schema 2 adds the independence tests:

- ``pair_tests``: one row per (pair, test): test name, suite version, the revisions of both
  inputs, log10 p and a JSON detail.  ``model_a`` is the model whose initialisation the
  constrained tests assume exchangeable.
- ``relations``: one row per tested pair: the combined log10 p, the Holm-adjusted
  log10 p (column ``log10_q``) over all pairs tested with the same suite version, and whether that makes the pair
  ``confirmed`` related; the block map the tests support.

Schema 6 adds the evidence store (``indexer.evidence_store``): ``evidence`` names, per model, the file
beside the database holding what the tests and the lineage stage read of it (its revision, the
capture recipe version, the file's size).

Schema 3 adds the lineage graph:

- ``models.weight_stats``: per-model statistics for direction and relation type (JSON).
- ``pair_evidence``: per tested pair, the fingerprint distance and raw-weight evidence (do the two
  share coordinates; how low-rank is their difference).
- ``merge_evidence``: a model fitted as a convex combination of two relatives.
- ``lineage_builds`` (one row per assembly run, with its time and counts), ``families`` (one row
  per assembled family version), ``family_members``, ``build_families`` (which family versions
  make up each build - unchanged families are reused, so a build re-assembles only what changed)
  and ``lineage_edges`` (parent -> child with relation, confidence, log10 p and evidence).

Schema 4 adds the crawler:
- ``crawl_state``: per Hub endpoint, the ``lastModified`` high-water mark of the last complete
  crawl (a nightly run lists only repos modified since).
- ``crawl_models``: per endpoint and repo, the revision sha last crawled, its status (``indexed``,
  ``unchanged``, ``gated``, ``gone``, ``no_safetensors``, ``failed``, ``unsupported``, ``retry``)
  with the reason, the declared ``base_model`` / ``base_model_relation``, creation time, bytes
  read and the repo's weight size.  A repo is crawled again only when its sha changes (or it was
  left at ``retry`` by a transient failure).
- ``runs``: every crawl / refresh run with start, end, status, counts and errors.
"""

from __future__ import annotations

import duckdb

from pedigree.errors import StorageError

MIGRATIONS: list[tuple[str, str]] = [
    (
        "initial schema",
        """
        CREATE SEQUENCE model_pk_seq START 1;
        CREATE TABLE models (
            pk INTEGER PRIMARY KEY DEFAULT nextval('model_pk_seq'),
            id VARCHAR NOT NULL UNIQUE,
            revision VARCHAR,
            source VARCHAR,
            source_signature VARCHAR,
            status VARCHAR NOT NULL,
            error VARCHAR,
            architecture VARCHAR,
            model_type VARCHAR,
            family VARCHAR,
            config JSON,
            tokenizer_hash VARCHAR,
            num_layers INTEGER,
            hidden_size INTEGER,
            num_parameters BIGINT,
            card JSON,
            created_at TIMESTAMP,
            indexed_at TIMESTAMP NOT NULL
        );
        CREATE SEQUENCE vector_id_seq START 1;
        CREATE TABLE fingerprints (
            vector_id BIGINT PRIMARY KEY DEFAULT nextval('vector_id_seq'),
            model_pk INTEGER NOT NULL,
            version VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            layer INTEGER NOT NULL,
            generation BIGINT NOT NULL,
            vector FLOAT[] NOT NULL
        );
        CREATE INDEX fingerprints_by_model ON fingerprints (model_pk);
        CREATE TABLE vector_tombstones (
            vector_id BIGINT NOT NULL,
            kind VARCHAR NOT NULL,
            generation BIGINT NOT NULL
        );
        CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
        INSERT INTO meta VALUES ('generation', '0');
        """,
    ),
    (
        "independence tests",
        """
        CREATE TABLE pair_tests (
            model_a INTEGER NOT NULL,
            model_b INTEGER NOT NULL,
            test VARCHAR NOT NULL,
            suite_version VARCHAR NOT NULL,
            revision_a VARCHAR,
            revision_b VARCHAR,
            log10_p DOUBLE NOT NULL,
            detail JSON,
            tested_at TIMESTAMP NOT NULL,
            PRIMARY KEY (model_a, model_b, test)
        );
        CREATE TABLE relations (
            model_a INTEGER NOT NULL,
            model_b INTEGER NOT NULL,
            suite_version VARCHAR NOT NULL,
            revision_a VARCHAR,
            revision_b VARCHAR,
            log10_p DOUBLE NOT NULL,
            log10_q DOUBLE,
            confirmed BOOLEAN NOT NULL DEFAULT false,
            layer_map JSON,
            tested_at TIMESTAMP NOT NULL,
            PRIMARY KEY (model_a, model_b)
        );
        """,
    ),
    (
        "lineage graph",
        """
        ALTER TABLE models ADD COLUMN weight_stats JSON;
        CREATE TABLE pair_evidence (
            model_a INTEGER NOT NULL,
            model_b INTEGER NOT NULL,
            revision_a VARCHAR,
            revision_b VARCHAR,
            distance DOUBLE NOT NULL,
            same_coordinates BOOLEAN,
            raw_cosine DOUBLE,
            raw_distance DOUBLE,
            delta_rank_gap DOUBLE,
            detail JSON,
            PRIMARY KEY (model_a, model_b)
        );
        CREATE TABLE merge_evidence (
            child INTEGER NOT NULL,
            parent_a INTEGER NOT NULL,
            parent_b INTEGER NOT NULL,
            alpha DOUBLE NOT NULL,
            residual_ratio DOUBLE NOT NULL,
            PRIMARY KEY (child, parent_a, parent_b)
        );
        CREATE SEQUENCE build_id_seq START 1;
        CREATE SEQUENCE family_id_seq START 1;
        CREATE TABLE lineage_builds (
            build_id INTEGER PRIMARY KEY DEFAULT nextval('build_id_seq'),
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            mode VARCHAR NOT NULL,
            families INTEGER,
            rebuilt INTEGER,
            edges INTEGER,
            params JSON
        );
        CREATE TABLE families (
            family_id INTEGER PRIMARY KEY DEFAULT nextval('family_id_seq'),
            members_hash VARCHAR NOT NULL,
            root INTEGER,
            size INTEGER NOT NULL,
            built_at TIMESTAMP NOT NULL,
            build_id INTEGER NOT NULL
        );
        CREATE TABLE family_members (family_id INTEGER NOT NULL, model_pk INTEGER NOT NULL);
        CREATE TABLE build_families (build_id INTEGER NOT NULL, family_id INTEGER NOT NULL);
        CREATE TABLE lineage_edges (
            family_id INTEGER NOT NULL,
            parent INTEGER NOT NULL,
            child INTEGER NOT NULL,
            relation VARCHAR NOT NULL,
            confidence DOUBLE,
            log10_p DOUBLE,
            evidence JSON
        );
        CREATE INDEX lineage_edges_by_family ON lineage_edges (family_id);
        CREATE INDEX family_members_by_family ON family_members (family_id);
        """,
    ),
    (
        "crawler",
        """
        CREATE TABLE crawl_state (
            endpoint VARCHAR PRIMARY KEY,
            high_water TIMESTAMP,
            updated_at TIMESTAMP NOT NULL
        );
        CREATE TABLE crawl_models (
            endpoint VARCHAR NOT NULL,
            repo_id VARCHAR NOT NULL,
            sha VARCHAR,
            last_modified TIMESTAMP,
            created_at TIMESTAMP,
            status VARCHAR NOT NULL,
            reason VARCHAR,
            base_model JSON,
            base_model_relation VARCHAR,
            bytes_read BIGINT NOT NULL DEFAULT 0,
            size_bytes BIGINT,
            attempted_at TIMESTAMP NOT NULL,
            PRIMARY KEY (endpoint, repo_id)
        );
        CREATE SEQUENCE run_id_seq START 1;
        CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY DEFAULT nextval('run_id_seq'),
            kind VARCHAR NOT NULL,
            endpoint VARCHAR,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            status VARCHAR NOT NULL,
            counts JSON,
            errors JSON
        );
        """,
    ),
    (
        "whole-block distance of a pair in other coordinates (fingerprint blocks are sampled)",
        """
        ALTER TABLE pair_evidence ADD COLUMN whole_block_distance DOUBLE;
        """,
    ),
    (
        "evidence store: one captured evidence file per model revision (indexer.evidence_store)",
        """
        CREATE TABLE evidence (
            model_pk INTEGER PRIMARY KEY,
            revision VARCHAR,
            version VARCHAR NOT NULL,
            file VARCHAR NOT NULL,
            bytes BIGINT NOT NULL,
            captured_at TIMESTAMP NOT NULL
        );
        """,
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: duckdb.DuckDBPyConnection) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
        "applied_at TIMESTAMP NOT NULL)"
    )
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: duckdb.DuckDBPyConnection) -> int:
    """Apply every pending migration; return the schema version now in effect."""
    version = current_version(conn)
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"the database has schema version {version} but this pedigree knows only up to {SCHEMA_VERSION}; upgrade "
            "pedigree"
        )
    if version == SCHEMA_VERSION:
        return version
    pending = range(version + 1, SCHEMA_VERSION + 1)
    conn.execute("BEGIN TRANSACTION")  # every pending migration in one transaction: all or none
    try:
        conn.execute(
            "\n".join(MIGRATIONS[number - 1][1] for number in pending)
        )  # one script (each ends with ';'): a fresh store opens faster
        conn.execute(
            "INSERT INTO schema_migrations SELECT unnest(?), unnest(?), now()",
            [list(pending), [MIGRATIONS[number - 1][0] for number in pending]],
        )
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION
