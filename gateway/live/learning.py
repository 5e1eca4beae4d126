"""ETA learning across the fleet: what routes showed of dwells and legs, shared by every process.

The dwells and legs the stage's routes finish (:meth:`~gateway.live.stage.TrackingStage.
take_finished`) are appended to the ``eta:observed`` stream (:meth:`EtaLearning.write`). Every
process follows that stream from its oldest entry kept, its own entries included
(:meth:`EtaLearning.follow`), into the stage's :class:`~geofence.FleetLearner`, which refits the
fleet's ETA prior as observations come and learns each stop location's dwells: the routes set
from then on start from them. Once the stream is read back at start, the routes installed
before get what was learnt too, and ``caught_up`` is set.
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from gateway.core.metrics import Metrics
from gateway.fleet.store import DWELL, LEG, EtaObservation, Store
from gateway.live.stage import TrackingStage

log = logging.getLogger(__name__)

# Finished dwells and legs kept in the ETA observations stream (about 80 bytes each in
# Redis): what routes showed, read back by every process and after a restart.
ETA_OBSERVED_MAX_LEN: Final = 1_000_000
ETA_OBSERVED_READ: Final = 10_000  # entries per read
ETA_OBSERVED_BLOCK_MS: Final = 5_000
REPRIME_BATCH: Final = 100  # trackers rebuilt between two checkpoints (ingest runs meanwhile)


class EtaLearning:
    """Writes ``stage``'s finished dwells and legs to ``store`` and learns from everyone's."""

    def __init__(self, store: Store, stage: TrackingStage, metrics: Metrics) -> None:
        self.store = store
        self.stage = stage
        self.metrics = metrics
        # Set once the ETA observations stream was read back at start.
        self.caught_up = trio.Event()

    async def write(self) -> None:
        """Append the dwells and legs finished since the last call to the stream."""
        finished = self.stage.take_finished()
        if not finished:
            return
        observed = [
            EtaObservation(DWELL if f.dwell else LEG, f.route, f.stop, f.planned_s, f.actual_s,
                           f.site)
            for f in finished
        ]  # fmt: skip
        try:
            await self.store.append_eta_observations(observed, ETA_OBSERVED_MAX_LEN)
        except Exception as exc:
            # Not learnt from, here or anywhere: a few dwells and legs among many.
            log.warning("could not record %d ETA observations: %s", len(observed), exc)

    async def follow(self) -> None:
        """Learn the ETA model from what every process's routes showed: the stream from the
        oldest entry kept, then each new one (this process's own included: that is how
        they are learnt here too). Once the stream is read back, the routes installed
        before get what was learnt (:meth:`_reprime_trackers`)."""
        fleet = self.stage.fleet
        last = "0-0"
        caught_up = False
        while True:
            try:
                last, observed = await self.store.read_eta_observations(
                    last, ETA_OBSERVED_READ, ETA_OBSERVED_BLOCK_MS if caught_up else None
                )
            except Exception as exc:
                log.warning("could not read ETA observations: %s", exc)
                await trio.sleep(1.0)
                continue
            for o in observed:
                if o.kind == DWELL:
                    fleet.observe_dwell(o.route, o.stop, o.planned_s, o.actual_s, o.site)
                else:
                    fleet.observe_leg(o.route, o.stop, o.planned_s, o.actual_s)
            self.metrics.inc("gateway_eta_observations_read_total", len(observed))
            if not caught_up and len(observed) < ETA_OBSERVED_READ:
                caught_up = True
                await self._reprime_trackers()
                self.caught_up.set()

    async def _reprime_trackers(self) -> None:
        """Rebuild each route tracker from its own state with the prior and stop locations
        learnt so far: the routes installed at start, before the ETA observations were read
        back, had only the built-in prior."""
        prior, sites = self.stage.fleet.prior(), self.stage.fleet.sites()
        for n, tracked in enumerate(list(self.stage.routes.values())):
            self.stage.reprime(tracked, prior, sites)
            if n % REPRIME_BATCH == REPRIME_BATCH - 1:
                await trio.lowlevel.checkpoint()  # many routes: let ingest run meanwhile
