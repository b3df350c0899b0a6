"""Benchmarks (``make bench``). Run the scripts as modules from the repository root,
``python -m benches.run``, so that they import each other and the test helpers
(``tests.support``) without touching ``sys.path``."""
