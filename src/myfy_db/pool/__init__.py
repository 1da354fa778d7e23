"""The pool: ``check-pool`` and ``profile-pool``.

- :mod:`.measure`: open the pool's connections, ping each, time connect and round trip
  (:func:`~.measure.check_pool`).
- :mod:`.report`: what the check reports (statistics, targets, the exit code).
- :mod:`.watch`: ``--watch``, the check again every N seconds.
- :mod:`.pooler`: a transaction pooler (PgBouncer) in front, and the driver settings it needs.
- :mod:`.stats`: percentiles, reservoirs and histograms.
- :mod:`.findings`: a finding's severity and ``--fail-on``.
- :mod:`.profile`: ``profile-pool``: the traffic tiers, the server's limits, ``--load``.

Nothing is imported here: the CLI loads the part it needs.
"""
