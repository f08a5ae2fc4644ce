"""The service: pedigree's answers over HTTP (a JSON API with OpenAPI docs) and a web page.

``pedigree serve`` runs :func:`pedigree.service.app.create_app` under uvicorn.  The service only
reads: it answers from the newest *published snapshot* of the data folder (a read-only copy of the
DuckDB file and the FAISS indexes, written by each process that changed the index), so a refresh
in another process never blocks or breaks a request.  Admin actions (refresh, ingest) need the
bearer token in ``PEDIGREE_ADMIN_TOKEN`` and run as child processes that publish a new snapshot.
"""
