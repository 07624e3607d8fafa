"""medml: from health-system data to validated, explained, fair clinical decision support.

Importing medml does nothing but define names; heavy libraries are imported where used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
