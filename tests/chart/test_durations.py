"""terminationGracePeriodSeconds: derived from config.shutdown (humantime strings parsed in the
template), always larger than delay + drainTimeout."""

import pytest

from conftest import render, render_error


def grace(values):
    return render(values).statefulset()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


@pytest.mark.parametrize(
    "delay, drain, expected",
    [
        ("2s", "20s", 32),
        ("5s", "1m", 75),
        ("1m30s", "2m", 220),
        ("1m 30s", "2 minutes", 220),
        # Each duration is rounded up to whole seconds: 1 + 2 + 10.
        ("500ms", "1500ms", 13),
        ("1s", "1h", 3611),
    ],
)
def test_computed_from_shutdown(delay, drain, expected):
    assert grace({"config": {"shutdown": {"delay": delay, "drainTimeout": drain}}}) == expected


def test_defaults_when_shutdown_is_unset():
    assert grace({"config": {"shutdown": None}}) == 32


def test_explicit_value_must_exceed_delay_plus_drain():
    assert grace({"terminationGracePeriodSeconds": 60}) == 60
    message = render_error({"terminationGracePeriodSeconds": 22})
    assert "terminationGracePeriodSeconds" in message and "22s" in message


@pytest.mark.parametrize("bad", ["20", "soon", "20 fortnights", "1.5s"])
def test_unparseable_durations_fail_naming_the_key(bad):
    # The schema refuses some shapes, the template the rest; both name the key.
    assert "drainTimeout" in render_error({"config": {"shutdown": {"drainTimeout": bad}}})
