"""The alias history of a registered model: who moved which alias to which version, when, why.

MLflow keeps only where an alias points *now*. Model-risk reviews need where it pointed
*then*, so every alias move made through :class:`registry.client.Registry` appends one
event, stored in the registry itself as a registered-model tag
``nbo.alias_history.<n>`` (``n`` zero-padded, so tags sort in order) whose value is the
event as JSON. The history therefore lives wherever the registry lives, survives restarts
and is visible in the MLflow UI next to the model.

Refused promotions are events too (``outcome`` ``refused``: the alias did not move, the
gate's reasons are in ``gate``), and so is an alias removed with ``nbo registry
unset-alias`` (``action`` ``unset``, ``version`` the version it was removed from).

This module is the pure part (event format, "who held the alias at time T", the champion
line used by rollback); reading and writing the tags is ``Registry``'s job.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

HISTORY_TAG_PREFIX = "nbo.alias_history."
MOVED = "moved"
REFUSED = "refused"
UNSET = "unset"
_SEQ_DIGITS = 6


@dataclass(frozen=True)
class AliasEvent:
    """One move (or refused move) of an alias. ``previous`` is the version that held it
    before (or None); ``gate`` is the promotion gate's finding (difference, interval,
    margin, or the reasons of a refusal)."""

    seq: int
    alias: str
    version: int
    previous: int | None
    actor: str
    at: datetime  # UTC
    reason: str
    action: str  # "promote" | "rollback" | "unset"
    forced: bool = False
    outcome: str = MOVED  # MOVED | REFUSED
    gate: str = ""

    @property
    def moved(self) -> bool:
        return self.outcome == MOVED

    def to_json(self) -> str:
        data = asdict(self)
        data["at"] = self.at.astimezone(UTC).isoformat()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> AliasEvent:
        data = json.loads(raw)
        return cls(
            seq=int(data["seq"]),
            alias=str(data["alias"]),
            version=int(data["version"]),
            previous=None if data.get("previous") is None else int(data["previous"]),
            actor=str(data.get("actor", "")),
            at=datetime.fromisoformat(data["at"]).astimezone(UTC),
            reason=str(data.get("reason", "")),
            action=str(data.get("action", "promote")),
            forced=bool(data.get("forced", False)),
            outcome=str(data.get("outcome", MOVED)),
            gate=str(data.get("gate", "")),
        )


def tag_key(seq: int) -> str:
    return f"{HISTORY_TAG_PREFIX}{seq:0{_SEQ_DIGITS}d}"


def events_from_tags(tags: Mapping[str, str]) -> list[AliasEvent]:
    """The events stored in a registered model's tags, oldest first."""
    events = [AliasEvent.from_json(v) for k, v in tags.items() if k.startswith(HISTORY_TAG_PREFIX)]
    return sorted(events, key=lambda e: e.seq)


def current_actor() -> str:
    """Who is acting: ``NBO_ACTOR`` when set (CI, a deployment bot), else the OS user."""
    explicit = os.environ.get("NBO_ACTOR")
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def holders_at(events: Iterable[AliasEvent], at: datetime) -> dict[str, int]:
    """Alias -> version that held it at ``at`` (aliases not yet set are absent)."""
    if at.tzinfo is None:
        raise ValueError(f"timestamp {at.isoformat()} has no time zone (use UTC, e.g. ...Z)")
    holders: dict[str, int] = {}
    for event in sorted(events, key=lambda e: e.seq):
        if event.at > at:
            break
        if not event.moved:
            continue
        if event.action == UNSET:
            holders.pop(event.alias, None)
        else:
            holders[event.alias] = event.version
    return holders


def champion_line(events: Iterable[AliasEvent], alias: str = "champion") -> list[int]:
    """The versions that held ``alias``, oldest first, with rolled-back holders popped.

    A promotion pushes its version, a rollback pops the current one, so rolling back twice
    from v3 (after v1 -> v2 -> v3) gives v2 and then v1 - never a flip-flop between two.
    When history starts while the alias already pointed somewhere, the first event's
    ``previous`` seeds the line. Refused promotions change nothing; removing the alias
    (``unset``) pops its holder, like a rollback that puts nothing back.
    """
    line: list[int] = []
    for event in sorted(events, key=lambda e: e.seq):
        if event.alias != alias or not event.moved:
            continue
        if event.action == UNSET:
            if line and line[-1] == event.version:
                line.pop()
            continue
        if event.action == "rollback":
            if line:
                line.pop()
            if not line or line[-1] != event.version:
                line.append(event.version)
            continue
        if not line and event.previous is not None:
            line.append(event.previous)
        if not line or line[-1] != event.version:
            line.append(event.version)
    return line


def now_utc() -> datetime:
    return datetime.now(UTC)
