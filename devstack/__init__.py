"""The local world: everything that stands in for AWS on this machine.

* :mod:`devstack.moto` - a moto server on loopback (the local S3).
* :mod:`devstack.local` - ``chalice local`` with TCP_NODELAY, gateway-shaped
  errors, and the watcher that turns new bucket objects into S3 events.
* :mod:`devstack.processes` - starting, waiting for and stopping a local
  stack as a child process (``make demo``, the end-to-end tests).

Entry points live in ``scripts/`` (``make local``, ``make s3-put``) and
``demo/`` (``make demo``); tests import the same pieces from here.
"""
