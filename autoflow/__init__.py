"""AutoFlow: run workflows of parametrised Jupyter notebooks for every new date of data."""

from autoflow.date_stencil import DateStencil, InvalidDateIntervalError
from autoflow.errors import AutoFlowError, ConfigError

__version__ = "0.1.0"

__all__ = ["AutoFlowError", "ConfigError", "DateStencil", "InvalidDateIntervalError", "__version__"]
