"""Crystal generation of SymmCD (arXiv 2502.03638) and its baseline DiffCSP (arXiv 2309.04475)."""
