"""The shared store on EFS (or a local folder): atomic, durable, locked.

Parts, each with one job:

* ``fs``: POSIX primitives: directories opened once beneath the root,
  opens that follow no symlink, directory fsync;
* ``manifest``: what the store records per object, including the object's
  identity at commit;
* ``locks``: per-name record locks across EFS clients and threads;
* ``commit``: the write protocol and its recovery;
* ``streaming``: hashing and write-back overlapped with the I/O;
* ``core``: :class:`Store`, the public face of the above.
"""

from chalicelib.store.core import Store
from chalicelib.store.errors import SizeMismatch
from chalicelib.store.manifest import Manifest, PutResult

__all__ = ["Store", "Manifest", "PutResult", "SizeMismatch"]
