"""Positions in: device connections and requests, validation, the single writer, acks.

``websocket.py``: the device WebSocket server, on ``ws_direct.py`` (frames handled in the
connection's reader task). ``http_server.py``: the lean device HTTP server (OsmAnd,
OwnTracks, the batch POST; httptools), and ``device_http.py``: those requests answered,
whichever server took them (the API port's endpoints are ``gateway.http.devices``).
``mqtt.py``: the MQTT subscriber, with ``mqtt_messages.py`` (broker URL, topics, payloads,
reconnect causes) and ``mqtt_ack.py`` (the client: PUBACK once stored, in order; keep-alive).
``wire.py``: frames in, acks out (JSON or MessagePack, bounded work before any decoding).
``device_formats.py``: OsmAnd and OwnTracks, their shapes, positions and attributes from
them. ``validation.py``: a position against its device's cursor. ``writer.py``: sessions,
rate budgets, the bounded queue and the single writer. ``auth.py``: which device a token
belongs to.
"""
