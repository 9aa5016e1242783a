"""A LiteLLM stand-in for development, tests and benchmarks: `python -m webapp.litellm.simulator`."""

from webapp.litellm.simulator.state import (
    DEFAULT_MASTER_KEY,
    Faults,
    SimulatorOptions,
    seeded_key_alias,
    seeded_key_secret,
)

__all__ = ["DEFAULT_MASTER_KEY", "Faults", "SimulatorOptions", "seeded_key_alias", "seeded_key_secret"]
