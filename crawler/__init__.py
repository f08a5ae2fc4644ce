"""The Hub crawler (lists new and changed models, reads only the bytes fingerprints need).

Not built yet: it will implement ``indexer.sources.TensorSource`` over HTTP range requests,
reusing ``indexer.safetensors_format`` for header parsing and validation.
"""
