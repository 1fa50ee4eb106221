# SPDX-License-Identifier: MIT
"""README.rst and docs/*.rst parse without a warning (a broken table or a
link to a section that is not there shows up here, not on a reader's
screen)."""

import io

import docutils.core
import pytest

from tests.harness.cache import REPO_ROOT

DOCUMENTS = ["README.rst", *sorted(
    str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "docs").glob("*.rst"))]


@pytest.mark.parametrize("name", DOCUMENTS)
def test_document_parses_without_a_warning(name):
    warnings = io.StringIO()
    docutils.core.publish_doctree(
        (REPO_ROOT / name).read_text(),
        settings_overrides={"report_level": 2, "halt_level": 5,
                            "warning_stream": warnings})
    assert warnings.getvalue() == ""
