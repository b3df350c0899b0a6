"""Helpers shared by the tests and the benchmarks (``from tests.support import peers``),
and the scripts they start as subprocesses: archive_scp, crash_sender, pynetdicom_scp,
qr_serve and store_rss_worker run by path (they import only fastdimse and pydicom or
pynetdicom); soak runs as a module from the repository root
(``python -m tests.support.soak``)."""
