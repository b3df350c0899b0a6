"""A griffe extension for the API reference (mkdocs.yml).

- The docstrings use Sphinx roles (:class:`~fastdimse.X`) and ``::`` before literal
  blocks: in Markdown these become code spans and a plain colon.
- The constants of fastdimse.status and fastdimse.uids come from the Rust core
  (``_core.STATUS_SUCCESS``, ``_U["VERIFICATION"]``): the reference shows their values,
  read from the built extension (left as written if it cannot be imported).
"""

from __future__ import annotations

import importlib
import re

import griffe

_ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):`(~?)([^`]+)`")
_LITERAL = re.compile(r"(\S)::$", re.M)
_VALUES_FROM = ("fastdimse.status", "fastdimse.uids")


def _role(m: re.Match) -> str:
    tilde, target = m.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class FastdimseDocs(griffe.Extension):
    """Markdown for the Sphinx roles; real values for the core's constants."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _LITERAL.sub(r"\1:", _ROLE.sub(_role, obj.docstring.value))

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs) -> None:
        module = attr.parent.path if attr.parent is not None else ""
        if module not in _VALUES_FROM:
            return
        try:
            value = getattr(importlib.import_module(module), attr.name)
        except (ImportError, AttributeError):
            return
        attr.value = f"0x{value:04X}" if isinstance(value, int) else repr(value)
