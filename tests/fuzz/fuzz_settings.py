"""Hypothesis profiles: ``ci`` (the default: small, derandomized, no example database, so a CI run
writes nothing into the repository) and ``long`` (``TALLY_FUZZ_PROFILE=long``, used by
scripts/fuzz: many more examples, random seeds, failures kept in a database outside the repo).

Tests state their CI-sized example count with ``examples(n)``; the long profile multiplies it by
``TALLY_FUZZ_SCALE`` (default 50)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILE = os.environ.get("TALLY_FUZZ_PROFILE", "ci")
SCALE = int(os.environ.get("TALLY_FUZZ_SCALE", "50")) if PROFILE == "long" else 1
DATABASE = Path(
    os.environ.get("TALLY_FUZZ_DATABASE", Path(tempfile.gettempdir()) / "tally-fuzz-examples")
)
"""Where the long profile keeps failing examples (replayed first on the next run)."""

# Hypothesis keeps caches (constants, Unicode tables) in its home directory, ./.hypothesis by
# default: outside the repository instead.
set_hypothesis_home_dir(
    os.environ.get("TALLY_FUZZ_HOME", Path(tempfile.gettempdir()) / "tally-hypothesis")
)

_common = {
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    # No shrinking in CI: shrinking a large request can take minutes. A failure prints the
    # example and a @reproduce_failure blob; the long profile shrinks it (docs/fuzzing.md).
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    **_common,
)
settings.register_profile("long", database=DirectoryBasedExampleDatabase(str(DATABASE)), **_common)
settings.load_profile(PROFILE)


def examples(ci: int) -> int:
    """``ci`` examples in CI; ``ci * TALLY_FUZZ_SCALE`` in the long run."""
    return ci * SCALE
