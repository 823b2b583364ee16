"""flowrun: a runtime for reviewable agent work. See README.md; the sub-packages are the layers
(`flows`, `storage`, `sandboxes`, `llm`, `runtime`, `tools`). Importing this package imports
nothing else, so `flowrun --help` stays instant."""

__version__ = "0.1.0"
__all__ = ["__version__"]
