"""The benchmark scripts, run from the repository root as ``python -m bench.<script>``.

bench/README.md says which script measures which section of BENCHMARKS.md, what it needs and where
it writes. Nothing here is imported by the product (mlcore, webapp, lambda).
"""
