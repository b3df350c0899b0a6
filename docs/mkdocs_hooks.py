"""mkdocs hooks (mkdocs.yml): the guide's home is guide/index.md, so site/index.html,
which mkdocs would leave out, sends the reader there."""

from __future__ import annotations

from pathlib import Path

_REDIRECT = """<!doctype html>
<html><head><meta charset="utf-8"><title>fastdimse</title>
<meta http-equiv="refresh" content="0; url=guide/">
<link rel="canonical" href="guide/"></head>
<body><a href="guide/">The fastdimse guide</a></body></html>
"""


def on_post_build(config, **kwargs) -> None:
    index = Path(config["site_dir"]) / "index.html"
    if not index.exists():
        index.write_text(_REDIRECT)
