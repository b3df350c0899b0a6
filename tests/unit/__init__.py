"""Unit tests: no sockets, no peers (codec, dictionary, matching, index, entity)."""
