import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

import minift as mf

# "dev" (the default) is derandomized like "ci": the same examples on every run, so a newcomer's first
# `make test` cannot go red by chance. HYPOTHESIS_PROFILE=explore draws new examples each run and prints
# the seed of a failure (`@seed(...)`) so that it can be replayed.
settings.register_profile("dev", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("explore", max_examples=200, deadline=None, print_blob=True)
settings.register_profile(
    "ci", max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
# `minift assignments check` only needs pass/fail: no shrinking, no explanation of failures
settings.register_profile(
    "assignments", max_examples=10, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
# `check`'s mutant runs under the student's "dev" profile: the same examples (derandomized), but no shrinking —
# whether a mutant is killed is decided before the shrink phase, which only simplifies the failing example
settings.register_profile(
    "dev-kill", max_examples=25, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

pytest_plugins = ["minift.assignments.pytest_plugin"]


# the course's reference answers (tests/oracles.py) are not in a student tree: a test that compares a task's code
# with one of them skips there, with this reason, and runs when `minift assignments grade` uses the course's tests
ORACLE_SKIP = "compares with the course's reference answer (tests/oracles.py), which a student tree does not have: " \
    "`minift assignments grade` runs this test"


@pytest.fixture(scope="session")
def oracles():
    """The module ``tests.oracles``: reference answers of the coursework tasks, written another way."""
    return pytest.importorskip("tests.oracles", reason=ORACLE_SKIP)


@pytest.fixture(autouse=True)
def _fresh_state():
    """Every test starts on NumPy, float32 default, seed 0, grad mode on."""
    mf.set_backend("numpy")
    mf.set_default_dtype(np.float32)
    mf.seed(0)
    mf.set_grad_enabled(True)
    yield
    mf.set_default_dtype(np.float32)


def pytest_terminal_summary(terminalreporter):
    """One line when the comparisons with PyTorch / transformers / PEFT were skipped: say so, and how to run them."""
    def reason(report):
        longrepr = report.longrepr
        return str(longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr)

    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if any(name in reason(r) for name in ("torch", "transformers", "peft", "PyTorch"))]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests that compare minift with PyTorch / transformers / PEFT were skipped: the references "
            "are not installed (.venv/bin/pip install -e '.[reference]' to run them; CI does)", yellow=True)
