"""A segment as one SQL query over the kept aggregates, for the common behavioural rules.

Batch evaluation of a whole audience (a campaign about to send) is the place where loading
every person's facts into Python costs most. Conditions answered by an aggregate's count and
last time alone — performed (ever, or at least once within a window), performed and not
followed by (with no wait), last performed more than some time ago, engaged, and all / any /
not of those — become one query the database runs over the aggregates. Anything else (traits,
reachability, buckets, counts within a window, a wait) returns ``None``: the caller evaluates
in Python with the same rule. The meaning is the same as ``junction.domain.segments``; the
reference and property tests compare the two.

Each clause is written to be true or false, never SQL NULL, so that ``not`` means what it
means in Python: a person without an aggregate compares as having none.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, and_, func, not_, or_, select, true
from sqlalchemy.sql.selectable import NamedFromClause

from junction.domain.segments import (
    AllOf,
    AnyOf,
    EngagedCondition,
    LastPerformedCondition,
    NotFollowedByCondition,
    NotOf,
    PerformedCondition,
    SegmentDefinition,
    signal_key,
)
from junction.store.tables import contacts, segment_signals


class _Joins:
    """One aliased aggregate row per signal the rule reads, and per earliest time it cares
    about (``since``: an older aggregate joins as no row at all)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, datetime | None], NamedFromClause] = {}

    def of(self, key: str, since: datetime | None = None) -> NamedFromClause:
        if (key, since) not in self.by_key:
            self.by_key[key, since] = segment_signals.alias(f"signal_{len(self.by_key)}")
        return self.by_key[key, since]


def members_query(
    definition: SegmentDefinition, workspace_id: int, now: datetime
) -> Select[Any] | None:
    """The contact ids of the members now, or None when the rule needs Python."""
    joins = _Joins()
    rule = definition.compile()
    base: NamedFromClause | None = None
    base_key, since = "", None
    if rule.requirement is not None and len(rule.requirement.alternatives) == 1:
        # Start from the required signal's rows (an index range): nobody else can match.
        base_key, since = rule.requirement.alternatives[0]
        base = joins.of(base_key)
    clause = _clause(definition.where, joins, now)
    if clause is None:
        return None
    if base is not None:
        source: Any = base
        person = base.c.contact_id
        filters: list[ColumnElement[bool]] = [
            base.c.workspace_id == workspace_id,
            base.c.signal == base_key,
        ]
        if since is not None:
            filters.append(base.c.last_at >= now - timedelta(seconds=since))
        others = {k: a for k, a in joins.by_key.items() if a is not base}
    else:
        source = contacts
        person = contacts.c.id
        filters = [contacts.c.workspace_id == workspace_id]
        others = joins.by_key
    for (key, after), alias in others.items():
        joined = [alias.c.contact_id == person, alias.c.signal == key]
        if after is not None:
            joined.append(alias.c.last_at >= after)
        source = source.outerjoin(alias, and_(*joined))
    return select(person).select_from(source).where(*filters, clause)


def _recent(alias: NamedFromClause, now: datetime, seconds: float) -> ColumnElement[bool]:
    return and_(alias.c.last_at.is_not(None), alias.c.last_at >= now - timedelta(seconds=seconds))


def _clause(node: BaseModel, joins: _Joins, now: datetime) -> ColumnElement[bool] | None:
    if isinstance(node, AllOf | AnyOf):
        children = node.all if isinstance(node, AllOf) else node.any
        found = [_clause(child, joins, now) for child in children]
        kept = [part for part in found if part is not None]
        if len(kept) < len(found):
            return None
        return and_(*kept) if isinstance(node, AllOf) else or_(*kept)
    if isinstance(node, NotOf):
        inner = _clause(node.not_, joins, now)
        return None if inner is None else not_(inner)
    if isinstance(node, PerformedCondition):
        alias = joins.of(signal_key(node.performed, node.where))
        if node.within is None:
            count = func.coalesce(alias.c.count, 0)
            parts = [count >= node.least]
            if node.at_most is not None:
                parts.append(count <= node.at_most)
            return and_(*parts)
        if node.at_most is not None or node.least > 1:
            return None  # a count inside a window: the kept times answer it, in Python
        if node.least == 0:
            return true()
        return _recent(alias, now, node.within.delta().total_seconds())
    if isinstance(node, NotFollowedByCondition):
        if node.not_followed_by.within is not None:
            return None
        first = joins.of(signal_key(node.performed, node.where))
        since = now - node.within.delta() if node.within is not None else None
        # With a window, only a second event inside it can follow a first one inside it: an
        # older one joins as none, so SQLite probes a range of the covering index, and can
        # only take that index (measured at 1,000,000 people: a third faster).
        second = joins.of(signal_key(node.not_followed_by.event, node.not_followed_by.where), since)
        clause = and_(
            first.c.last_at.is_not(None),
            or_(second.c.last_at.is_(None), second.c.last_at < first.c.last_at),
        )
        if since is not None:
            clause = and_(clause, first.c.last_at >= since)
        return clause
    if isinstance(node, LastPerformedCondition):
        alias = joins.of(signal_key(node.last_performed, node.where))
        due = now - node.more_than.delta()
        long_ago = and_(alias.c.last_at.is_not(None), alias.c.last_at <= due)
        return or_(long_ago, alias.c.last_at.is_(None)) if node.or_never else long_ago
    if isinstance(node, EngagedCondition):
        alias = joins.of(signal_key(*node.signal()))
        if node.within is None:
            return alias.c.last_at.is_not(None)
        return _recent(alias, now, node.within.delta().total_seconds())
    return None
