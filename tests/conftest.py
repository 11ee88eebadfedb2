"""Suite-wide settings.

In CI (``CI=true``) the framework cross-checks must really run: a skipped comparison with Keras or PyTorch
proves nothing, so any test skipped for a missing framework or browser turns the run red there.
"""

import os

import pytest

from rnnlab import files

MUST_RUN_IN_CI = ("torch", "tensorflow", "keras", "chromium", "chromedriver", "selenium", "matplotlib", "onnx",
                  "safetensors")
# Hardware a CI machine may lack (tests that need it say so at the start of their skip reason): such a skip is
# never a missing tool, whatever else its reason names.
HARDWARE = ("needs a cpu", "needs a cuda gpu", "needs two cuda gpus")


def skipped_for_missing_tools(session) -> list:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    reasons = [(r, str(r.longrepr[-1] if isinstance(r.longrepr, tuple) else r.longrepr).lower()) for r in skipped]
    return [r for r, reason in reasons
            if not reason.startswith(HARDWARE) and any(name in reason for name in MUST_RUN_IN_CI)]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI", "").lower() != "true":
        return
    bad = skipped_for_missing_tools(session)
    if bad and session.exitstatus == 0:
        print(f"\nCI: {len(bad)} test(s) were skipped for a missing framework or browser; in CI they must run "
              "(install the [test] extra and chromium)")
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def fresh_file_session():
    """Each test is a command of its own: the inputs noted by the output guard (files.py) start empty, as
    they do for every ``rnnlab`` command."""
    files.new_session()
    yield


@pytest.fixture
def stream_corpus(tmp_path):
    """A small play-like text (stream mode: read as one text in windows), ~3,000 characters."""
    path = tmp_path / "play.txt"
    path.write_text("".join(f"KING:\nline {i}, my lord, of the play we make.\n\n" for i in range(60)))
    return str(path)
