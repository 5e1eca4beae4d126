"""Vehicles and devices: positions, each vehicle's state, and their storage in Redis.

``position.py``: a GPS fix's fields and ranges, defined once. ``state.py``: a vehicle's state
(moving, stopped, offline) and the fleet in memory. ``store.py``: Redis access for devices,
vehicle state, cursors and position history (one script call per write batch).
``hub.py``: the fan-out of states to browsers, bounded per browser. ``peers.py``: states
shared between gateway processes.
"""
