"""Behaviour tests: fastdimse against itself or hand-played raw sockets (associations, hostile peers, crash safety, acknowledgements, windows, load)."""
