"""Positions in: device connections and requests, validation, the single writer, acks.

``websocket.py``: the device WebSocket server, on ``ws_direct.py`` (frames handled in the
connection's reader task). ``mqtt.py``: the MQTT subscriber, with ``mqtt_ack.py`` (PUBACK once
stored, in order). ``wire.py``: frames in, acks out (JSON or MessagePack, bounded work before
any decoding). ``device_formats.py``: OsmAnd and OwnTracks, their shapes and positions from
them (the HTTP endpoints are ``gateway.http.devices``). ``validation.py``: a position against
its device's cursor. ``writer.py``: sessions, rate budgets, the bounded queue and the single
writer. ``auth.py``: which device a token belongs to.
"""
