"""Routes, stops and deliveries.

``records.py``: the records as stored, and their ids. ``models.py``: the API's input and output
shapes. ``validate.py``: an import batch checked and turned into records. ``lifecycle.py``:
delivery statuses and the moves between them. ``plan.py``: what a change does (records in,
changes and events out; pure). ``store.py``: Redis, each change and its events one
MULTI/EXEC. ``service.py``: :class:`~gateway.dispatch.service.Dispatch`, the operations the
API and the live stage call. ``kpis.py``: the shipper's figures from the event log.
"""
