"""The chart README's values table matches values.yaml, and every ci example it names exists."""

import re

from conftest import CHART_DIR
from values_doc import readme_table, table


def test_values_table_is_current():
    assert readme_table() == table(), "run: .venv/bin/python tests/chart/values_doc.py --write"


def test_named_examples_exist():
    readme = (CHART_DIR / "README.md").read_text()
    for name in set(re.findall(r"ci/([a-z-]+-values\.yaml)", readme)):
        assert (CHART_DIR / "ci" / name).exists(), name
