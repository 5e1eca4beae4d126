"""Redis key names, in one place.

Every key that belongs to one vehicle or device carries its id in a ``{hash tag}``, so on a
Redis Cluster all of one vehicle's keys share a slot and a vehicle's batch write is one
script call.
"""

from __future__ import annotations

from typing import Final

from notify.events import EVENTS_STREAM

DEVICES: Final = "devices"  # set of device ids
VEHICLES: Final = "vehicles"  # set of vehicle ids
# stream, field "e": an Event as JSON; in the {dispatch} slot (see notify.events)
EVENTS: Final = EVENTS_STREAM
# stream: what routes showed for ETAs, one entry per finished dwell (field k "d") or leg
# driven from stop to stop (k "l"): r route id, i stop index, p planned s, a actual s, and for
# a dwell s the stop's location key; what every process learns its ETA model from
ETA_OBSERVED: Final = "eta:observed"
# counter: the ingest writer's write right before each WAIT (REDIS_WAIT_REPLICAS), so the
# WAIT covers every write the server had taken by then, whichever connection made it
WAIT_MARK: Final = "writer:waitmark"


def device(device_id: str) -> str:
    return f"dev:{{{device_id}}}"  # hash: vehicle, name, token_hash, revoked, created


def device_token(token_hash: str) -> str:
    return f"devtok:{token_hash}"  # string: device id


def vehicle(vehicle_id: str) -> str:
    # hash: state (msgpack); per device: cur:<device> (msgpack cursor), seq:<device> (its
    # seq, 20 digits), rl:<device> (its rate budget: "tokens time")
    return f"veh:{{{vehicle_id}}}"


def track(vehicle_id: str) -> str:
    return f"veh:{{{vehicle_id}}}:track"  # stream, fields d (device), p (msgpack positions)


# ----- the live stage and peers (pub/sub channels)

LIVE_STATES: Final = "live:states"  # vehicle states published for the other processes
ROUTES_CHANGED: Final = "routes:changed"  # (origin, route id) as MessagePack

# ----- routes and deliveries (one {dispatch} slot: a change is one MULTI/EXEC)

ROUTES: Final = "routes:{dispatch}"
ROUTES_ACTIVE: Final = "routes:{dispatch}:active"
ROUTES_EXT: Final = "routes:{dispatch}:ext"
DELIVERIES: Final = "deliveries:{dispatch}"
DELIVERIES_EXT: Final = "deliveries:{dispatch}:ext"


def route_key(route_id: str) -> str:
    return f"route:{{dispatch}}:{route_id}"


def route_deliveries_key(route_id: str) -> str:
    return f"route:{{dispatch}}:{route_id}:dlv"


def vehroute_key(vehicle: str) -> str:
    return f"vehroute:{{dispatch}}:{vehicle}"


# ----- zones

ZONES: Final = "zones:{zones}"
ZONES_CHANGED: Final = "zones:changed"


def zone_key(zone_id: str) -> str:
    return f"zone:{{zones}}:{zone_id}"


# ----- customers: tracking links, proofs of delivery, claims (proofs and claims in the
# {dispatch} slot: each is written in one MULTI/EXEC with the delivery change and events)

REVOCATIONS: Final = "trk:revocations"  # stream: one entry per revocation, field d the delivery
CLAIMS: Final = "claims:{dispatch}"  # sorted set of claim ids, by opening time


def revoked_key(delivery_id: str) -> str:
    return f"trk:{{{delivery_id}}}"  # string: links issued before this time (ms) are revoked


def pod_key(delivery_id: str) -> str:
    return f"pod:{{dispatch}}:{delivery_id}"


def claim_key(claim_id: str) -> str:
    return f"claim:{{dispatch}}:{claim_id}"
