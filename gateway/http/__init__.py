"""The HTTP side (quart-trio on hypercorn): it sits on top of the other packages and none
of them imports it.

``app.py``: ``create_app``, which hands each route module the services it uses. Route
modules: ``fleet.py`` (devices, vehicles, the event log), ``devices.py`` (OsmAnd and
OwnTracks over HTTP), ``dispatch.py``, ``zones.py``, ``customer.py`` (tracking pages and
links), ``pod.py``, ``claims.py``, ``ops.py`` (the ops page and stream, KPIs, CSV export).
``spec.py`` and ``openapi.py``: the operations as data and ``/openapi.json``; ``models.py``,
``ops_models.py`` and ``notify_ops.py``: their shapes. ``common.py``: the agent key check.
``errors.py`` and ``body.py``: JSON errors, refused requests' bodies. ``guard.py``: 503 while
Redis is away. ``static/``: the pages.
"""
