"""Render throughput: personalised emails built from a template, per second per process.

A realistic template (a subject with the contact's name; about 40 lines of HTML with a
``<style>`` block, paragraphs and a table; 6 variables, personal ``contact.*`` and shared
``data.*``/``workspace.*`` ones; a ``{% for %}`` loop over the send's items; a filter; two
tracked links and the open pixel) goes through the full build, in the same run as a baseline:

1. the baseline: python-liquid alone rendering the same subject and HTML source for the same
   contacts (``liquid.Environment().from_string(...).render(...)``): no inlining, no tracked
   links, no plain-text part, no MIME;
2. Junction: the template compiled once, bound once per batch of 200 recipients (as a
   campaign batch is), then per recipient ``BoundBlock.render`` (subject, HTML, text, tracked
   links, pixel) and ``junction.render.email.render`` to the bytes sent at DATA
   (transactional, no DKIM).

Every recipient is a different contact (names and cities vary, about a third non-ASCII)
with its own message id. Both run interleaved over a few rounds (the machine is shared and
noisy); the best round of each counts.

Ends with ``RESULT render value=<emails/s> … ratio=<full/baseline>``; target >= 0.7 and
>= 10,000 emails/s.

    .venv/bin/python bench/render.py             # 20,000 emails a round, about a minute
    .venv/bin/python bench/render.py --profile   # one full-build round under cProfile
"""

from __future__ import annotations

import argparse
import cProfile
import email
import email.policy
import pstats
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

import liquid

from junction.domain.templates import TemplateDefinition
from junction.render import email as mail
from junction.render.personalise import BoundBlock, Links, bind, compile_template

TARGET_RATIO = 0.7
TARGET_RATE = 10_000
BATCH = 200  # recipients per bind, as a campaign batch
DEFAULT_N = 20_000
DEFAULT_ROUNDS = 5

SUBJECT = "{{ contact.first_name }}, your {{ workspace.name }} order is on its way"
HTML = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<style>
  body { font-family: Helvetica, Arial, sans-serif; color: #222222; margin: 0; }
  .wrap { max-width: 600px; margin: 0 auto; padding: 24px; }
  h1 { font-size: 22px; color: #0b5394; }
  table.items { width: 100%; border-collapse: collapse; }
  table.items td { padding: 6px 0; border-bottom: 1px solid #eeeeee; }
  .price { text-align: right; font-weight: bold; }
  .button { background: #0b5394; color: #ffffff; padding: 10px 18px; text-decoration: none; }
  .foot { font-size: 12px; color: #888888; }
</style>
</head>
<body>
<div class="wrap">
  <h1>Hello {{ contact.first_name }}!</h1>
  <p>Thanks for shopping with {{ workspace.name }}. Your order is packed and leaves our
  warehouse today.</p>
  <p>We are shipping it to you with our usual carrier; most parcels arrive within two
  working days. In your parcel:</p>
  <ul>
    {% for item in data.items %}
    <li>{{ item.quantity }} x {{ item.name }}, {{ item.price }} USD</li>
    {% endfor %}
  </ul>
  <table class="items">
    <tr><td>Order</td><td class="price">#{{ data.order_id }}</td></tr>
    <tr><td>Ship to</td><td class="price">{{ contact.city | upcase }}</td></tr>
    <tr><td>Plan</td><td class="price">{{ contact.plan }}</td></tr>
  </table>
  <p>As a member of our {{ contact.plan }} plan, {{ contact.first_name }}, shipping is on us.</p>
  <p><a class="button" href="https://shop.example.com/orders/track">Track your parcel</a></p>
  <p>Questions? Write to {{ workspace.support_email }} or reply to this email and
  a person will answer within a day.</p>
  <p class="foot">You receive this email because you ordered from
  {{ workspace.name }}. <a href="https://shop.example.com/account">Your account</a></p>
</div>
</body>
</html>
"""

FIRST_NAMES = (
    "Ada", "Grace", "Alan", "Linus", "Zoë", "Margaret", "Dennis", "José", "Barbara",
    "Ken", "Frances", "Åsa", "John", "Radia", "Łukasz", "Edsger", "Hedy", "Niklaus",
    "Sophie", "Tim",
)  # fmt: skip
CITIES = (
    "Lyon", "Boston", "Leeds", "Porto", "Zürich", "Oslo", "Denver", "Kyoto", "Austin",
    "Malmö", "Dublin", "Gdańsk", "Perth", "Ghent", "Turin",
)  # fmt: skip
PLANS = ("free", "plus", "pro", "team")
SHARED = {
    "event": {},
    "data": {
        "order_id": "A-100482",
        "items": [
            {"name": "Walnut desk organiser", "quantity": 1, "price": "34.00"},
            {"name": "Linen notebook, dotted", "quantity": 3, "price": "27.00"},
            {"name": "Fountain pen ink, blue-black", "quantity": 2, "price": "18.50"},
        ],
    },
    "workspace": {"name": "Paper & Co", "support_email": "help@shop.example.com"},
}
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def definition() -> TemplateDefinition:
    return TemplateDefinition.model_validate(
        {
            "key": "order-shipped",
            "channels": {"email": {"subject": SUBJECT, "html": HTML}},
            "tracking": {"clicks": True, "opens": True, "utm": {"source": "junction"}},
        }
    )


def contacts(n: int) -> list[dict[str, Any]]:
    people = []
    for index in range(n):
        first = FIRST_NAMES[index % len(FIRST_NAMES)]
        people.append(
            {
                "id": f"user-{index:06d}",
                "email": f"customer{index}@example.net",
                "first_name": first,
                "last_name": f"Customer{index}",
                "city": CITIES[(index * 7) % len(CITIES)],
                "plan": PLANS[index % len(PLANS)],
            }
        )
    return people


def baseline(people: list[dict[str, Any]]) -> float:
    """python-liquid alone: subject and HTML source, per contact. Emails per second."""
    env = liquid.Environment()
    subject, html = env.from_string(SUBJECT), env.from_string(HTML)
    started = time.perf_counter()
    for contact in people:
        subject.render(contact=contact, **SHARED)
        html.render(contact=contact, **SHARED)
    return len(people) / (time.perf_counter() - started)


def full_build(
    people: list[dict[str, Any]],
    compiled: Any,
    sender: mail.Sender,
    links: Links,
    first_id: int,
) -> float:
    """Bind per batch, render per contact, build the message bytes. Emails per second."""
    block = compiled.block("email", None)
    started = time.perf_counter()
    bound: BoundBlock | None = None
    for offset, contact in enumerate(people):
        if offset % BATCH == 0:
            bound = bind(block, SHARED, compiled.definition.tracking.utm)
        assert bound is not None
        number = first_id + offset
        rendered = bound.render(contact, number, links)
        mail.render(
            sender,
            to=contact["email"],
            content=rendered.content,
            idempotency_key=f"bench:{number}",
            message_number=number,
            transactional=True,
            headers={},
            now=NOW,
        )
    return len(people) / (time.perf_counter() - started)


def check(compiled: Any, sender: mail.Sender, links: Links) -> None:
    """One message of each kind read back: the work measured is the real thing."""
    block = compiled.block("email", None)
    bound = bind(block, SHARED, compiled.definition.tracking.utm)
    for contact in contacts(len(FIRST_NAMES)):
        rendered = bound.render(contact, 7, links)
        built = mail.render(
            sender,
            to=contact["email"],
            content=rendered.content,
            idempotency_key="bench:check",
            message_number=7,
            transactional=True,
            headers={},
            now=NOW,
        )
        message = email.message_from_bytes(built.data, policy=email.policy.default)
        assert not message.defects, message.defects
        assert message["Subject"].startswith(contact["first_name"] + ","), message["Subject"]
        html = message.get_body(("html",))
        text = message.get_body(("plain",))
        assert html is not None and text is not None
        html_body, text_body = html.get_content(), text.get_content()
        assert f"Hello {contact['first_name']}!" in html_body
        assert contact["city"].upper() in html_body and "Walnut desk organiser" in html_body
        assert links.click_url(7, 0) in html_body and links.open_url(7) in html_body
        assert f"Hello {contact['first_name']}!" in text_body
        assert rendered.links[0].startswith("https://shop.example.com/orders/track?utm_source=")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="emails per round (20,000)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds (5)")
    parser.add_argument(
        "--profile", action="store_true", help="profile one full-build round instead"
    )
    args = parser.parse_args()
    n, rounds = args.n, args.rounds

    compiled = compile_template(definition(), 1)
    sender = mail.make_sender("shop@shop.example.com", "Paper & Co")
    links = Links(b"bench-secret-key-0123456789abcdef", "https://go.shop.example.com")
    people = contacts(n)
    check(compiled, sender, links)
    ascii_share = sum(c["first_name"].isascii() and c["city"].isascii() for c in people) / n

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        rate = full_build(people, compiled, sender, links, 1)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        print(f"full build under cProfile: {rate:,.0f} emails/s")
        return 0

    base_rates: list[float] = []
    full_rates: list[float] = []
    baseline(people[: min(n, 1000)])  # warm both paths up
    full_build(people[: min(n, 1000)], compiled, sender, links, 1)
    for round_ in range(1, rounds + 1):
        base_rates.append(baseline(people))
        full_rates.append(full_build(people, compiled, sender, links, round_ * n))
        print(
            f"round {round_}/{rounds}: liquid alone {base_rates[-1]:8,.0f}/s   "
            f"full build {full_rates[-1]:8,.0f}/s",
            file=sys.stderr,
        )
    base, full = max(base_rates), max(full_rates)
    ratio = full / base
    print(f"{n:,} contacts a round ({ascii_share:.0%} all-ASCII), {rounds} rounds, best of each")
    print(
        f"python-liquid alone (subject + HTML)  {base:9,.0f} emails/s   "
        f"(median {statistics.median(base_rates):,.0f})"
    )
    print(
        f"full build (render + MIME bytes)      {full:9,.0f} emails/s   "
        f"(median {statistics.median(full_rates):,.0f})"
    )
    print(f"ratio {ratio:.2f} (target >= {TARGET_RATIO}, and >= {TARGET_RATE:,} emails/s)")
    print(
        f"RESULT render value={full:.0f} unit=emails/s baseline={base:.0f} ratio={ratio:.3f} "
        f"target=>={TARGET_RATIO}x,>={TARGET_RATE}/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
