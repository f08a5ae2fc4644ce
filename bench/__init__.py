import pedigree  # noqa: F401  - before torch: pedigree sets the OpenMP wait policy (see pedigree/__init__.py)
