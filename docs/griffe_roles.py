"""A griffe extension for the API reference (mkdocs.yml): the docstrings use Sphinx
roles (:class:`~fastdimse.X`) and ``::`` before literal blocks; in Markdown these
become code spans and a plain colon."""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):`(~?)([^`]+)`")
_LITERAL = re.compile(r"(\S)::$", re.M)


def _role(m: re.Match) -> str:
    tilde, target = m.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles as Markdown code spans in every docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _LITERAL.sub(r"\1:", _ROLE.sub(_role, obj.docstring.value))
