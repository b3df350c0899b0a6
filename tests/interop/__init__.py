"""Interoperability tests: fastdimse against real peers (dcmtk, pynetdicom) and the sanity of those peers."""
