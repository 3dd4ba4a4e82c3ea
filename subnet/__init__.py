"""The ``subnet`` command line: one entry point for every service and user tool."""

__version__ = "0.1.0"
