"""What every part of the gateway shares; nothing here knows of devices, routes or HTTP.

``keys.py``: every Redis key name. ``events.py``: the event log's one writer (each event a
``notify.events.Event``) and its reads. ``connect.py``: a Redis or Redis Cluster client for
a URL. ``listen.py``: a server started on its address, a failure to bind said in one line.
``outage.py``: which errors mean Redis is away (waited out) rather than a bug.
``pubsub.py``: following a pub/sub channel through reconnects. ``redisproc.py``: the private
``redis-server`` of a data folder. ``metrics.py``: counters and gauges for ``/metrics``.
``failures.py``: a bug logged once per place. ``secrets.py``: agents' API keys and the
secrets kept in the data folder. ``runfile.py``: ``DATA_DIR/gateway.json``, where the
command line finds a running gateway. ``fields.py`` and ``structs.py``: field types shared
by input Structs, and which input a validation error blames.
"""
