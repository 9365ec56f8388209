"""Sphinx extension for the API page: a docstring that is not valid reStructuredText is a build error.

Docutils alone would render an indentation slip or a stray ``*`` as garbled text with a note buried in the log.
This extension checks every docstring after napoleon (on its output) and reports the first fault as a Sphinx
warning naming the object; the book is built with ``-W``, so the build fails and says where to look.
"""

from __future__ import annotations

import re
from typing import Any

from docutils.core import publish_doctree
from docutils.utils import Reporter
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Sphinx-only roles/directives are unknown to plain docutils; they are not docstring faults.
_SPHINX_ONLY = re.compile(r'Unknown (interpreted text role|directive type)|No (role|directive) entry for')
_ROLE = re.compile(r":(?:[\w-]+:)+`")


def docstring_problems(text: str) -> list[str]:
    """Messages (level >= WARNING) that plain docutils reports for ``text``, Sphinx-only constructs excepted."""
    messages: list[str] = []

    class Collect:
        def write(self, s: str) -> None:  # docutils writes formatted messages to a stream
            pass

    settings = {"report_level": Reporter.WARNING_LEVEL, "halt_level": Reporter.SEVERE_LEVEL + 1,
                "warning_stream": Collect(), "input_encoding": "unicode", "file_insertion_enabled": False,
                "raw_enabled": False}
    doctree = publish_doctree(_ROLE.sub("`", text), settings_overrides=settings)
    nodes = [n for n in doctree.findall() if n.tagname == "system_message"] + list(doctree.transform_messages)
    for node in nodes:
        if node["level"] >= Reporter.WARNING_LEVEL:
            msg = node.astext()
            if not _SPHINX_ONLY.search(msg):
                messages.append(msg.splitlines()[0])
    return messages


def guard(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if not lines:
        return
    problems = docstring_problems("\n".join(lines))
    if problems:
        logger.warning("docstring_guard: the docstring of %s is not valid reStructuredText: %s", name, problems[0])


def setup(app: Any) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", guard, priority=900)  # after napoleon (priority 500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
