"""mechlab: a laboratory for small, memory-efficient language models."""

from mechlab.errors import MechlabError

__version__ = "0.1.0"
__all__ = ["MechlabError", "__version__"]
