"""Channel-policy throughput: ``reachability.decide()`` over (contact, message) pairs.

Builds every input up front: a pool of contacts (varied countries, timezones, addresses,
opt-outs, topic preferences, engagement, open chat windows and 0-20 counted sends in the last
30 days), a handful of asks with five candidate channels each, workspace rules with four cap
rules (per day, per week, per channel, per topic) and quiet hours on the interrupting channels,
and send times spread over a week. Then, in the same run:

1. the baseline: the same loop over the same pairs with the policy replaced by a constant
   choice (loop, unpacking and call overhead only);
2. Junction: ``decide()`` for every pair.

Ends with ``RESULT policy value=<decisions/s> … ratio=<value/baseline>``; target >= 100,000/s.

    .venv/bin/python bench/policy.py                # 1,000,000 pairs, about half a minute
    .venv/bin/python bench/policy.py --n 100000     # quicker
    .venv/bin/python bench/policy.py --profile      # cProfile of decide(), top 25
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from datetime import time as wall

from junction.domain.caps import CapRule, PastSend
from junction.domain.quiet_hours import QuietHours
from junction.domain.reachability import (
    Ask,
    ContactFacts,
    Decision,
    Rules,
    Topic,
    decide,
)

TARGET = 100_000
START = datetime(2026, 3, 23, 0, 0, tzinfo=UTC)  # a week that crosses Europe's DST change
PLACES = [
    ("BR", "America/Sao_Paulo"),
    ("MX", "America/Mexico_City"),
    ("US", "America/New_York"),
    ("US", "America/Los_Angeles"),
    ("GB", "Europe/London"),
    ("FR", "Europe/Paris"),
    ("DE", "Europe/Berlin"),
    ("UA", "Europe/Kyiv"),
    ("IN", "Asia/Kolkata"),
    ("JP", "Asia/Tokyo"),
    ("TH", "Asia/Bangkok"),
    ("KR", "Asia/Seoul"),
    ("CN", "Asia/Shanghai"),
    ("NG", "Africa/Lagos"),
    (None, None),
]
CHAT = ["whatsapp", "line", "viber", "messenger", "telegram", "wechat", "kakaotalk"]
TOPICS = ["promo", "news", "digest"]
STATUSES = ["active"] * 8 + ["unverified", "bounced", "invalid", "unsubscribed"]


def rules() -> Rules:
    return Rules(
        topics={
            "promo": Topic("promo"),
            "news": Topic("news", channels=frozenset({"email", "push", "in_app", "whatsapp"})),
            "digest": Topic("digest", default_opt_in=False),
        },
        caps=(
            CapRule("daily-2", limit=2, amount=1, unit="days"),
            CapRule("weekly-5", limit=5, amount=1, unit="weeks"),
            CapRule("sms-weekly-2", limit=2, amount=1, unit="weeks", channel="sms"),
            CapRule("promo-4h", limit=1, amount=4, unit="hours", topic="promo"),
        ),
        quiet_hours=(
            QuietHours(wall(21), wall(8), frozenset({"sms", "voice", "whatsapp", "push"})),
        ),
    )


def contact(rng: random.Random) -> ContactFacts:
    country, tz = rng.choice(PLACES)
    addresses = {"email": rng.choice(STATUSES)} if rng.random() < 0.9 else {}
    if rng.random() < 0.8:
        addresses["sms"] = rng.choice(STATUSES)
    if rng.random() < 0.6:
        addresses["push"] = rng.choice(STATUSES)
    for app in rng.sample(CHAT, rng.randint(0, 2)):
        addresses[app] = "active"
    channels = [*addresses, "in_app"]
    history = [
        PastSend(
            START - timedelta(minutes=rng.randint(0, 30 * 24 * 60)),
            rng.choice(channels),
            rng.choice([*TOPICS, None]),
        )
        for _ in range(rng.randint(0, 20))
    ]
    history.sort(key=lambda sent: sent.at, reverse=True)  # as the store gives it: newest first
    return ContactFacts(
        timezone=tz,
        country=country,
        preferred_channel=rng.choice([None, None, None, *channels]),
        addresses=addresses,
        opted_out=frozenset(c for c in ("sms", "email") if rng.random() < 0.05),
        preferences={
            (rng.choice(TOPICS), rng.choice(channels)): rng.random() < 0.5
            for _ in range(rng.randint(0, 3))
        },
        engagement={
            c: (rng.randint(0, 5), rng.randint(5, 30)) for c in channels if rng.random() < 0.5
        },
        open_sessions=frozenset(c for c in CHAT if c in addresses and rng.random() < 0.2),
        history=history,
    )


def asks() -> list[Ask]:
    everything = frozenset(["email", "sms", "push", "in_app", *CHAT])
    made = []
    for category in [*TOPICS, "transactional"]:
        for candidates in [
            ("push", "whatsapp", "email", "sms", "in_app"),
            ("whatsapp", "line", "messenger", "email", "sms"),
            ("email", "push", "viber", "sms", "telegram"),
        ]:
            made.append(
                Ask(candidates, category, everything, session_only=frozenset({"messenger"}))
            )
    return made


def pairs(n: int, pool: int, seed: int) -> list[tuple[Ask, ContactFacts, datetime]]:
    rng = random.Random(seed)
    contacts = [contact(rng) for _ in range(pool)]
    choices = asks()
    nows = [START + timedelta(minutes=rng.randint(0, 7 * 24 * 60)) for _ in range(2000)]
    return [(rng.choice(choices), rng.choice(contacts), rng.choice(nows)) for _ in range(n)]


CONSTANT = Decision("send", "email", None, (), "constant")


def constant(ask: Ask, contact: ContactFacts, rules: Rules, now: datetime) -> Decision:
    return CONSTANT


def run(policy, work, workspace) -> tuple[float, Counter[str]]:  # type: ignore[no-untyped-def]
    actions: Counter[str] = Counter()
    started = time.perf_counter()
    for ask, facts, now in work:
        actions[policy(ask, facts, workspace, now).action] += 1
    return time.perf_counter() - started, actions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="(contact, message) pairs")
    parser.add_argument("--contacts", type=int, default=10_000, help="distinct contacts")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="profile decide() and stop")
    args = parser.parse_args()

    print(f"building {args.n:,} pairs over {args.contacts:,} contacts…", file=sys.stderr)
    work = pairs(args.n, args.contacts, args.seed)
    workspace = rules()
    # The pre-built inputs are millions of long-lived objects: without this, every full
    # collection walks them all and the timing measures the harness, not the policy.
    gc.collect()
    gc.freeze()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, decide, work, workspace)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0

    base_seconds, _ = run(constant, work, workspace)
    base = args.n / base_seconds
    print(f"baseline (constant choice): {base:,.0f}/s", file=sys.stderr)
    seconds, actions = run(decide, work, workspace)
    value = args.n / seconds
    print(f"decide(): {value:,.0f}/s in {seconds:.1f} s; {dict(actions)}", file=sys.stderr)
    print(
        f"RESULT policy value={value:.0f} unit=decisions/s baseline={base:.0f} "
        f"ratio={value / base:.3f} target=>={TARGET}/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
