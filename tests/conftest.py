"""Suite-wide settings.

In CI (``CI=true``) the framework cross-checks must really run: a skipped comparison with Keras or PyTorch
proves nothing, so any test skipped for a missing framework or browser turns the run red there.
"""

import os

import pytest

MUST_RUN_IN_CI = ("torch", "tensorflow", "keras", "chromium", "chromedriver", "selenium", "matplotlib", "onnx",
                  "safetensors")


def skipped_for_missing_tools(session) -> list:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    return [r for r in skipped if any(name in str(r.longrepr).lower() for name in MUST_RUN_IN_CI)]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI", "").lower() != "true":
        return
    bad = skipped_for_missing_tools(session)
    if bad and session.exitstatus == 0:
        print(f"\nCI: {len(bad)} test(s) were skipped for a missing framework or browser; in CI they must run "
              "(install the [test] extra and chromium)")
        session.exitstatus = 1
