"""The MoTHer stage: families, directed edges with relation types, merges, discrepancies.

``evidence`` (raw-weight evidence through the tensor sources), ``assemble`` (one family: fused
direction signals + minimum spanning arborescence + merge parents), ``build`` (incremental,
versioned builds from DuckDB), ``discrepancies`` (model cards vs weights).
"""
