"""The usual messaging apps per country: a starting table for ranking channels.

Rules kept here:
- keys are ISO 3166-1 alpha-2 codes in upper case; values list channels, most usual first;
- each list names the country's dominant chat app(s), then SMS, the fallback every phone has;
- a country not listed gives no country preference (the policy ranks by the other criteria);
- this is a starting table, not the truth: a workspace overrides it (``Rules.country_apps``)
  with what its own audience answers on.

Sources: public market-share surveys of messaging apps (2023-2024); where no app clearly
dominates, the country is left out rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


def _each(apps: tuple[str, ...], countries: str) -> dict[str, tuple[str, ...]]:
    return dict.fromkeys(countries.split(), apps)


_WHATSAPP = ("whatsapp", "sms")

COUNTRY_APPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        # Western, Northern and Southern Europe, and the UK.
        **_each(
            _WHATSAPP,
            "GB IE FR DE NL BE LU AT CH IT ES PT NO SE DK FI IS CZ SK HU RO HR SI CY MT",
        ),
        # Latin America.
        **_each(_WHATSAPP, "BR MX AR CO CL PE EC UY PY BO VE CR PA GT HN SV NI DO"),
        # South and South-East Asia where WhatsApp leads.
        **_each(_WHATSAPP, "IN PK BD LK NP ID MY SG PH"),
        # Africa.
        **_each(_WHATSAPP, "NG ZA KE EG GH MA TZ UG ET SN CI CM ZW ZM"),
        # The Middle East.
        **_each(_WHATSAPP, "SA AE QA KW OM BH JO LB IL TR"),
        # Viber leads in parts of Eastern Europe and the Balkans; Telegram is close in UA and BY.
        "UA": ("viber", "telegram", "sms"),
        "BY": ("viber", "telegram", "sms"),
        "MD": ("viber", "sms"),
        "BG": ("viber", "messenger", "sms"),
        "RS": ("viber", "whatsapp", "sms"),
        "GR": ("viber", "whatsapp", "sms"),
        # Messenger is the most used third-party chat app; most people still answer texts.
        "US": ("messenger", "sms"),
        "CA": ("messenger", "sms"),
        "PL": ("messenger", "whatsapp", "sms"),
        # East Asia: one app each.
        "JP": ("line", "sms"),
        "TW": ("line", "sms"),
        "TH": ("line", "messenger", "sms"),
        "CN": ("wechat", "sms"),
        "KR": ("kakaotalk", "sms"),
    }
)
