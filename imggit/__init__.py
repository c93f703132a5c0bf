"""imggit: git's history tools for container images."""

__version__ = "0.1.0"
