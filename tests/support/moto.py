"""Tests use the same moto launcher as `make local`."""
from scripts.moto_server import MotoServer, free_port  # noqa: F401
