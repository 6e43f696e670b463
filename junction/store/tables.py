"""The schema, as SQLAlchemy Core tables. Alembic migrations are generated from this.

Every row belongs to a workspace, and every query filters on it: a key of one workspace
never sees another's rows. Times are stored timezone-aware, in UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.expression import true

from junction.store.types import UtcDateTime

# Names for constraints, so migrations are the same on both databases.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# An absent document is SQL NULL, not the JSON text 'null'.
Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only gives an INTEGER PRIMARY KEY the rowid's speed; PostgreSQL gets a bigint.
Id = BigInteger().with_variant(Integer(), "sqlite")
Time = UtcDateTime()

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", Time, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("prefix", String(32), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("label", String(200), nullable=False),
    Column("created_at", Time, nullable=False),
    Column("revoked_at", Time),
    Index(None, "workspace_id"),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    # The customer's own id; null for a contact only known by an anonymous id so far.
    Column("user_id", String(255)),
    Column("traits", Json, nullable=False),
    Column("timezone", String(64)),
    Column("locale", String(35)),
    Column("country", String(2)),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    UniqueConstraint("workspace_id", "user_id"),
)

# Other ids that lead to a contact: anonymous ids, and user ids merged into it by alias.
contact_aliases = Table(
    "contact_aliases",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # "anonymous" | "user"
    Column("alias", String(255), nullable=False),
    UniqueConstraint("workspace_id", "kind", "alias"),
    Index(None, "contact_id"),
)

addresses = Table(
    "addresses",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # junction.domain.addresses.AddressKind
    Column("value", String(2048), nullable=False),
    Column("status", String(16), nullable=False),  # junction.domain.addresses.AddressStatus
    Column("details", Json, nullable=False),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    UniqueConstraint("contact_id", "kind", "value"),
    # Inbound messages and provider callbacks find the contact by address.
    Index(None, "workspace_id", "kind", "value"),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("type", String(16), nullable=False),
    # The event name for track, the page or screen name for page and screen.
    Column("name", String(255)),
    Column("user_id", String(255)),
    Column("anonymous_id", String(255)),
    # Properties for track, page and screen; previousId for alias, groupId for group.
    Column("properties", Json),
    # Traits for identify and group.
    Column("traits", Json),
    Column("context", Json),
    Column("timestamp", Time, nullable=False),
    Column("received_at", Time, nullable=False),
    Column("sent_at", Time),
    UniqueConstraint("workspace_id", "message_id"),
    Index(None, "contact_id", "timestamp"),
)

# Erased people: a keyed hash of each id they had, so a late event cannot bring them back.
suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("identity_hash", String(64), nullable=False),
    Column("created_at", Time, nullable=False),
    UniqueConstraint("workspace_id", "identity_hash"),
)

# The outbox and the record of every message, in one row: a send intent is committed in the
# same transaction as whatever caused it; the dispatcher claims due rows, sends, and records
# the outcome on the row.
messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="SET NULL")),
    # Deterministic, unique per workspace: the same intent can never become two messages.
    Column("idempotency_key", String(255), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("to_address", String(2048), nullable=False),
    Column("category", String(64), nullable=False),  # "transactional" or a topic key
    Column("content", Json, nullable=False),
    # queued → sending → sent → delivered; or retrying, failed, bounced, dead (retries spent)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("due_at", Time, nullable=False),  # when the next attempt may start
    Column("lease_until", Time),  # a claimed row belongs to its worker until then
    Column("provider_message_id", String(255)),
    Column("last_error", String(1000)),
    Column("details", Json),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    UniqueConstraint("workspace_id", "idempotency_key"),
    # Reachability: what the message asked for (a channel or "best of" candidates, caps and
    # quiet-hours options), every decision taken on it, whether it counts toward caps, and
    # when to try the next channel if delivery is not confirmed.
    Column("policy", Json),
    Column("decisions", Json),
    Column("counts", Boolean, nullable=False, server_default=true()),
    Column("fallback_at", Time),
    Index(None, "status", "due_at"),
    Index(None, "contact_id", "created_at"),
    Index(None, "provider", "provider_message_id"),
    Index(None, "fallback_at"),
)

message_attempts = Table(
    "message_attempts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", Time, nullable=False),
    Column("finished_at", Time, nullable=False),
    Column("outcome", String(16), nullable=False),  # sent, retry, failed, invalid
    Column("error", String(1000)),
    Column("retry_after", Time),
    Index(None, "message_id"),
)

# Stripe-style Idempotency-Key for API calls: the first answer is replayed for the same body.
api_requests = Table(
    "api_requests",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", Json, nullable=False),
    Column("created_at", Time, nullable=False),
    UniqueConstraint("workspace_id", "idempotency_key"),
)

# Which provider carries each channel of a workspace, with its validated configuration.
provider_configs = Table(
    "provider_configs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("config", Json, nullable=False),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    UniqueConstraint("workspace_id", "channel"),
)

# In-app messages and content cards: Junction is their provider; the app pulls them.
inbox_items = Table(
    "inbox_items",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # "in_app" | "content_card"
    Column("content", Json, nullable=False),
    Column("pinned", Boolean, nullable=False),
    Column("expires_at", Time),
    Column("read_at", Time),
    Column("clicked_at", Time),
    Column("dismissed_at", Time),
    Column("created_at", Time, nullable=False),
    UniqueConstraint("message_id"),
    Index(None, "contact_id", "id"),
)

# Templates: one row per key, one per saved version (a version never changes once saved, so
# a message queued with version 3 renders version 3 even after version 4 is saved).
templates = Table(
    "templates",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # "message" | "landing"
    Column("name", String(200)),
    Column("current_version", Integer, nullable=False),
    Column("archived_at", Time),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    UniqueConstraint("workspace_id", "key"),
)

template_versions = Table(
    "template_versions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("template_id", Id, ForeignKey("templates.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Json, nullable=False),
    Column("digest", String(64), nullable=False),  # an unchanged apply saves no new version
    Column("created_at", Time, nullable=False),
    UniqueConstraint("template_id", "version"),
)

# Workspace constants: what every template of the workspace can use as {{ workspace.NAME }}.
workspace_constants = Table(
    "workspace_constants",
    metadata,
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("constants", Json, nullable=False),
    Column("updated_at", Time, nullable=False),
)

# Topics: what marketing messages are about, and what a person can opt in to or out of.
topics = Table(
    "topics",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", String(2000)),
    Column("default_opt_in", Boolean, nullable=False),
    Column("channels", Json),  # the channels it may use; null: any
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    UniqueConstraint("workspace_id", "key"),
)

# A person's choices: opted in or out of a topic on a channel; topic "*" is every marketing
# topic (a global opt-out of a channel, such as STOP on SMS).
preferences = Table(
    "preferences",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("topic", String(64), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("opted_in", Boolean, nullable=False),
    Column("source", String(32), nullable=False),  # api, preference_center, keyword, unsubscribe
    Column("updated_at", Time, nullable=False),
    UniqueConstraint("contact_id", "topic", "channel"),
)

# A workspace's reachability rules: frequency caps, quiet hours, its country table and channel
# costs (overriding the built-in ones), inbound keywords and help texts.
workspace_policies = Table(
    "workspace_policies",
    metadata,
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("rules", Json, nullable=False),
    Column("updated_at", Time, nullable=False),
)

# Journeys: one row per key, one per saved version; a run stays on the version it entered.
journeys = Table(
    "journeys",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(64), nullable=False),
    Column("name", String(200)),
    Column("status", String(16), nullable=False),  # draft, active, paused, archived
    Column("current_version", Integer, nullable=False),
    # The event that enters people (of the current version), for matching without a scan.
    Column("trigger_event", String(200)),
    # A scheduled journey's next firing (UTC); null when it has no schedule or is not active.
    Column("next_fire_at", Time),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    UniqueConstraint("workspace_id", "key"),
    Index(None, "workspace_id", "trigger_event"),
    Index(None, "next_fire_at"),
)

journey_versions = Table(
    "journey_versions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("journey_id", Id, ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Json, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", Time, nullable=False),
    UniqueConstraint("journey_id", "version"),
)

journey_runs = Table(
    "journey_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("journey_id", Id, ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),  # active, waiting, completed, exited, converted
    Column("step", String(64)),
    Column("state", Json, nullable=False),
    Column("wake_at", Time),  # when its timer fires; null: none
    Column("entered_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    Index(None, "contact_id", "status"),
    Index(None, "wake_at"),
    Index(None, "journey_id", "contact_id"),
)

# Per journey and step: how many runs entered, were sent a message, converted, exited…
journey_counts = Table(
    "journey_counts",
    metadata,
    Column("journey_id", Id, ForeignKey("journeys.id", ondelete="CASCADE"), primary_key=True),
    Column("step", String(64), primary_key=True),  # "" for the journey as a whole
    Column("metric", String(16), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

# How far the journey engine has read the events table (events are matched to runs in order).
journey_cursor = Table(
    "journey_cursor",
    metadata,
    Column("id", Integer, primary_key=True),  # one row
    Column("last_event_id", BigInteger, nullable=False),
)

# Segments: behavioural audiences, kept current as events arrive (junction.store.segments).
segments = Table(
    "segments",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(64), nullable=False),
    Column("name", String(200)),
    Column("status", String(16), nullable=False),  # active, archived
    Column("version", Integer, nullable=False),  # bumped when the definition changes
    Column("definition", Json, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("members", BigInteger, nullable=False),  # how many are in it now
    Column("evaluated_at", Time),  # the last whole evaluation
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    UniqueConstraint("workspace_id", "key"),
)

# What segments watch in the event stream: an event name with a property filter. Each
# contact's aggregate of a signal is kept in segment_signals.
signals = Table(
    "signals",
    metadata,
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(32), primary_key=True),  # a digest of event and filter
    Column("event", String(255), nullable=False),
    Column("filter", Json, nullable=False),
    Column("keep_seconds", BigInteger, nullable=False),  # how far back recent times are kept
    Column("created_at", Time, nullable=False),
    Index(None, "workspace_id", "event"),
)

segment_signals = Table(
    "segment_signals",
    metadata,
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("signal", String(32), primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("first_at", Time, nullable=False),
    Column("last_at", Time, nullable=False),
    Column("recent", Json, nullable=False),  # epoch seconds, ascending, within keep_seconds
    # Covers the audience query's range scan: who did it since when, no table row read.
    Index(None, "workspace_id", "signal", "last_at", "contact_id"),
    # Covers the audience query's probe of a person's other signals (their last time).
    Index(None, "contact_id", "signal", "last_at"),
)

# Each contact's standing in each segment, and when time alone may change it.
segment_members = Table(
    "segment_members",
    metadata,
    Column("segment_id", Id, ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("member", Boolean, nullable=False),
    Column("since", Time, nullable=False),
    Column("recheck_at", Time),
    Index(None, "recheck_at"),
    Index(None, "segment_id", "member"),
)

# How far segment evaluation has read the events table.
segment_cursor = Table(
    "segment_cursor",
    metadata,
    Column("id", Integer, primary_key=True),  # one row
    Column("last_event_id", BigInteger, nullable=False),
)

# Campaigns (broadcasts): one message to an audience, now or at a time (junction.store.campaigns).
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(64), nullable=False),
    Column("name", String(200)),
    # draft, scheduled, sending, paused, completed, cancelled
    Column("status", String(16), nullable=False),
    Column("definition", Json, nullable=False),
    Column("scheduled_at", Time),  # when a scheduled campaign starts sending
    Column("started_at", Time),  # when its audience was frozen
    Column("finished_at", Time),
    Column("winner", String(64)),  # the A/B test's winning variant, once chosen
    Column("audience_size", BigInteger),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
    UniqueConstraint("workspace_id", "key"),
    Index(None, "status", "scheduled_at"),
)

# Who a campaign sends to, frozen when it starts: one row per contact, moved from pending to
# queued (with its message) in the transaction that queues the message.
campaign_recipients = Table(
    "campaign_recipients",
    metadata,
    Column("campaign_id", Id, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("variant", String(64)),  # null: control, or held for the test's winner
    Column("status", String(16), nullable=False),  # pending, queued, control, skipped
    Column("due_at", Time, nullable=False),
    Column("convert_by", Time),  # the goal's window ends (due_at + goal.within)
    Column("queued_at", Time),
    Column("message_id", Id),
    Column("reason", String(500)),
    # A round claims the next batch in (due_at, contact_id) order straight from this index
    # (without contact_id, each round would sort every due recipient: quadratic).
    Index(None, "campaign_id", "status", "due_at", "contact_id"),
    Index(None, "campaign_id", "queued_at"),
)
