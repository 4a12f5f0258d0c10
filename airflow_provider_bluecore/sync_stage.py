"""The sync-state stage of SqlToBluecoreOperator: between mapping and sending, drop what is unchanged, resend kept failures.

A plain module (no Airflow import). :class:`SyncStateStage` implements the operator's ``EventStage`` seam over a
:class:`~airflow_provider_bluecore.sync_state.SyncSession`:

* ``select`` first yields the failed events kept from earlier runs (oldest first), then the query's events that the state
  says to send, deciding 900 at a time with one lookup each;
* ``record`` remembers every outcome (buffered, written in short bounded transactions);
* ``summary`` adds ``skipped_unchanged``, ``skipped_already_delivered``, ``skipped_rejected_unchanged``,
  ``resent_from_failures`` and ``still_failing`` to the run summary.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from airflow_provider_bluecore.delivery import Outcome
from airflow_provider_bluecore.mapping import MappedEvent
from airflow_provider_bluecore.sync_state import Decision, StateStore, SyncSession, event_key, fingerprint, redact_key

__all__ = ["SyncStateStage"]

_CHUNK = 900
_LOG = logging.getLogger(__name__)


def _key_and_fingerprint(mapped: MappedEvent) -> tuple[str, str]:
    event = mapped.event if isinstance(mapped.event, Mapping) else {"event": None, "value": repr(mapped.event)}
    return event_key(event, mapped.key), fingerprint(event)


class SyncStateStage:
    """Sends only what the state says to send, and records what became of it.

    :param store: the state store (closed by :meth:`close` when ``owns_store``).
    :param session: the run's session over one sync (and partition).
    :param mode: ``changed`` or ``new`` for the sync's own events. ``identify`` events added by ``auto_identify`` always use
        ``changed``: a customer's identity link is resent when it changes.
    :param owns_store: close the store at the end of the run.
    :param logger: where the stage logs (counts and redacted keys only).
    """

    def __init__(
        self,
        store: StateStore,
        session: SyncSession,
        mode: str,
        owns_store: bool = True,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.mode = mode
        self.owns_store = owns_store
        self.log = logger or _LOG
        self._in_flight: dict[int, tuple[str, str]] = {}

    def select(self, events: Iterator[MappedEvent]) -> Iterator[MappedEvent]:
        """Kept failures first (oldest first), then the query's events worth sending."""
        for kept in self.session.pending_failed():
            resend = MappedEvent(json.loads(kept.payload), row=0)
            self._in_flight[id(resend)] = (kept.key, kept.fingerprint)
            yield resend
        resent = self.session.stats.resent_from_failures
        if resent:
            self.log.info("Resent %d events kept from earlier runs' failures", resent)
        chunk: list[MappedEvent] = []
        for mapped in events:
            chunk.append(mapped)
            if len(chunk) >= _CHUNK:
                yield from self._decided(chunk)
                chunk = []
        if chunk:
            yield from self._decided(chunk)

    def _decided(self, chunk: list[MappedEvent]) -> Iterator[MappedEvent]:
        keyed = [_key_and_fingerprint(m) for m in chunk]
        own = [i for i, m in enumerate(chunk) if not m.generated]
        generated = [i for i, m in enumerate(chunk) if m.generated]
        decisions: list[Decision | None] = [None] * len(chunk)
        for indexes, mode in ((own, self.mode), (generated, "changed")):
            if indexes:
                for i, decided in zip(indexes, self.session.decide([keyed[i] for i in indexes], mode), strict=True):
                    decisions[i] = decided
        for mapped, key_fp, decision in zip(chunk, keyed, decisions, strict=True):
            if decision is Decision.SEND:
                self._in_flight[id(mapped)] = key_fp
                yield mapped

    def record(self, mapped: MappedEvent, outcome: Outcome) -> None:
        """Remember the outcome of one selected event."""
        key_fp = self._in_flight.pop(id(mapped), None)
        if key_fp is None:  # not selected by this stage; nothing to remember it by
            return
        key, fp = key_fp
        if outcome.status == "failed":
            self.log.debug("Keeping failed event %s to resend next run", redact_key(key))
        self.session.record(
            key,
            fp,
            outcome.status,
            event_name=mapped.name,
            attempts=outcome.attempts,
            reason=outcome.reasons,
            payload=outcome.payload,
        )

    def summary(self) -> dict[str, Any]:
        """The state's counters for the run summary."""
        stats = self.session.stats
        return {
            "mode": self.mode,
            "sync_id": self.session.sync_id,
            "skipped_unchanged": stats.skipped_unchanged,
            "skipped_already_delivered": stats.skipped_already_delivered,
            "skipped_rejected_unchanged": stats.skipped_rejected_unchanged,
            "resent_from_failures": stats.resent_from_failures,
            "still_failing": stats.recorded["failed"],
        }

    def close(self) -> None:
        """Write the last outcomes; release the store."""
        try:
            self.session.close()
        finally:
            if self.owns_store:
                self.store.close()
