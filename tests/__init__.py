"""The pytest suite: unit/ (no sockets), behaviour/ (fastdimse against itself or raw
sockets), interop/ (dcmtk and pynetdicom peers); support/ holds the shared helpers and
the scripts tests run as subprocesses. Imported as ``tests.*`` from the repository root
(pytest puts the root on ``sys.path`` because this folder is a package)."""
