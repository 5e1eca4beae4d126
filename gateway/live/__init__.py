"""The live side of the gateway: what happens to positions once they are written.

``stage.py``: the pure live stage (:class:`~gateway.live.stage.TrackingStage`), no I/O — the
geofence engine and one route tracker and approach per started route run over written fixes
and the clock, and give zone, stop, delivery and vehicle events as event-log records.

``tracking.py``: :class:`~gateway.live.tracking.LiveTracking`, the service the gateway runs —
takes the written batches, runs the stage on them, records the events (a delivery arriving in
dispatch with them), and composes the modules below.

``persistence.py``: the stage's state per vehicle in Redis (zone memberships, route tracker,
the stop it drives to), saved as it changes and loaded at start, when a route is installed,
and when a vehicle's fixes move here from another process.

``sync.py``: zone and route changes made through any process, applied here, and caught up
with after the change feeds are subscribed again.

``ticks.py``: the ticker running the time-driven rules every second without new fixes.

``learning.py``: ETA learning — the dwells and legs routes finish, written to and read back
from the ``eta:observed`` stream by every process, into the fleet's ETA prior.

``alert_feed.py``: the ops feed of notify's alerts — every alert change made by any process, to
this process's ops browsers, each version once.
"""
