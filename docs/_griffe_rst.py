"""A griffe extension for the API pages: the docstrings' reStructuredText roles as Markdown.

mixest's docstrings are numpydoc, written for Sphinx: ``:math:`x```, ``.. math::`` blocks and
cross-reference roles (``:func:`name```). mkdocstrings renders Markdown, so before the docstrings
are parsed this extension turns math into the ``$...$`` / ``$$...$$`` that
``pymdownx.arithmatex`` hands to MathJax, and the roles into code spans.
"""

from __future__ import annotations

import re

import griffe

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|obj|exc|ref):`~?([^`]+)`")
_DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*$")


def rst_to_markdown(text: str) -> str:
    """Math roles and ``.. math::`` blocks to arithmatex, cross-references to code spans."""
    text = _MATH_ROLE.sub(lambda m: f"${m[1]}$", text)
    text = _XREF_ROLE.sub(lambda m: f"`{m[1]}`", text)
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, body = match[1], []
        i += 1
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i].strip())
            i += 1
        while body and not body[-1]:
            body.pop()
        out += [f"{indent}$$", *(f"{indent}{b}" for b in body if b), f"{indent}$$", ""]
    return "\n".join(out)


class RstRoles(griffe.Extension):
    """Rewrite every docstring with :func:`rst_to_markdown` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
