"""Batch jobs: one request fans a large stored input out to many workers.

* ``plan``: the ``POST /jobs`` body and the blocks an input splits into;
* ``state``: a job's files on the store (plan, per-block results and failures);
* ``queue``: one SQS message per block;
* ``worker``: the SQS edge, running blocks idempotently;
* ``inference``: the one seam to the model runtime (arrays in, arrays out);
* ``assemble``: joining finished blocks into one ``.npy`` per output;
* ``service``: the use cases behind the routes (create, status, list, cancel).
"""
