"""Zones a dispatcher draws (GeoJSON, with circles and corridors): ``store.py`` keeps them
in Redis with the ``zones:changed`` feed; ``models.py`` holds the API's shapes. The geometry is
``geofence``'s; the live stage applies them (``gateway.live``).
"""
