"""The local deployment rehearsal against moto (``python -m infra.local.rehearsal``)."""
