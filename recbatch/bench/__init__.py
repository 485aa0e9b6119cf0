"""Benchmarks run as commands (`recbatch bench ...`, `make bench`), never as tests: each one measures
recbatch against a peer on identical inputs in the same run and reports ratios."""
