"""Large stores made fast, for listing tests and the round-trip bench.

``seed`` lays out ``n`` ready objects exactly as the store does (the object
at its path, its manifest under ``.meta/<kind>/``), but writes them without
the durable protocol (no lock, fsync or rename): 20,000 names take a second,
not minutes. A listing only ever reads the manifests, so what it sees is
what a store of that many real ingests would show.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable

from chalicelib.store.commit import META, manifest_name
from chalicelib.store.manifest import Manifest, now


def seed(root: str, names: Iterable[str], kind: str = "models") -> list[str]:
    """Ready objects ``kind/<name>`` for every name (content: the name); the names, sorted."""
    objects, meta = os.path.join(root, kind), os.path.join(root, META, kind)
    os.makedirs(objects, exist_ok=True)
    os.makedirs(meta, exist_ok=True)
    stamp = now()
    written = []
    for name in names:
        data = name.encode()
        path = os.path.join(objects, name)
        with open(path, "wb") as f:
            f.write(data)
        st = os.stat(path)
        manifest = Manifest(
            fileId=str(uuid.uuid4()),
            key=f"{kind}/{name}",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            version=1,
            source="inline",
            etag=None,
            created=stamp,
            updated=stamp,
            inode=st.st_ino,
            mtimeNs=st.st_mtime_ns,
        )
        with open(os.path.join(meta, manifest_name(name)), "wb") as f:
            f.write(manifest.to_json())
        written.append(name)
    return sorted(written)
