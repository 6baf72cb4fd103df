"""selfimprove: recursive self-improvement loops you can run, measure and trust.

    selfimprove run            # the `quick` preset: string copy on a CPU, in minutes
    selfimprove status runs/quick
"""

__version__ = "0.1.0"

from selfimprove.config import Config, ConfigError, load_config  # noqa: E402
from selfimprove.loop import run_loop  # noqa: E402
from selfimprove.rundir import RunDir, RunError  # noqa: E402

__all__ = ["Config", "ConfigError", "RunDir", "RunError", "__version__", "load_config", "run_loop"]
