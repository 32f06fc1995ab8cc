"""The installed version of gradbasics."""

__version__ = "0.1.0"
