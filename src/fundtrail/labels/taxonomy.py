"""The fixed category taxonomy of attribution labels, and how foreign vocabularies map onto it.

Every label carries exactly one category of :data:`CATEGORIES`. Importers translate their source's own
vocabulary here, once, at the edge: GraphSense TagPacks name a ``category`` (an entity concept of the
INTERPOL/Iknaio concepts taxonomy, e.g. ``exchange``, ``mixing_service``, ``coinjoin``) and an ``abuse``
(e.g. ``ransomware``, ``sextortion``, ``sanction``). The abuse, when it maps to a category other than
``other``, wins: for money-laundering work the abuse is the more specific statement ("this address took
ransom") than the entity type ("this is a user"). Anything we do not know maps to ``other``, and the
original value is always kept in the label's context (``tagpack_category``, ``tagpack_abuse``).

Confidence is an integer 0-100. TagPacks name a level of GraphSense's confidence scale
(graphsense-tagpack-tool ``src/tagpack/db/confidence.csv``; ``ledger_immanent`` added in its 23.x
changelog): :data:`TAGPACK_CONFIDENCE` holds those levels verbatim. A missing or unknown level is ``None``
(unknown), never guessed.
"""

from __future__ import annotations

import re

from fundtrail.errors import InvalidInput

CATEGORIES: dict[str, str] = {
    "exchange": "a centralised exchange or broker (fiat and/or crypto), where funds can be cashed out",
    "mixer": "a mixing service or coinjoin coordinator that obscures the trail of funds",
    "darknet_market": "a darknet marketplace for illicit goods and services",
    "ransomware": "an address that received ransom payments or is operated by a ransomware group",
    "scam": "fraud: fake investments, Ponzi/pyramid schemes, sextortion, giveaway and impersonation scams",
    "phishing": "phishing: credentials or funds taken by impersonating a trusted party",
    "sanctioned": "listed by a sanctions authority (e.g. OFAC SDN Digital Currency Address)",
    "stolen_funds": "funds reported stolen (victim-side or proceeds), not tied to a named hack",
    "hack": "a hack or exploit of a service, or its perpetrator's addresses",
    "gambling": "an online gambling or betting service",
    "defi": "a decentralised-finance protocol contract (DEX, lending, yield)",
    "bridge": "a cross-chain bridge contract or custodian",
    "miner": "a mining pool or miner payout address",
    "merchant": "a merchant accepting crypto for goods or services",
    "payment_processor": "a payment processor settling crypto payments for merchants",
    "terrorist_financing": "collection or movement of funds for terrorism",
    "child_abuse_material": "sale or purchase of child sexual abuse material",
    "other": "anything else (the source's own category is kept in the label's context)",
}

# GraphSense TagPack `category` (concepts taxonomy) -> ours. Values seen in the shared packs first.
TAGPACK_CATEGORY: dict[str, str] = {
    "exchange": "exchange",
    "miner": "miner",
    "mining_service": "miner",
    "coinjoin": "mixer",
    "mixing_service": "mixer",
    "mixing": "mixer",
    "defi": "defi",
    "defi_lending": "defi",
    "defi_dex": "defi",
    "defi_bridge": "bridge",
    "bridge": "bridge",
    "gambling": "gambling",
    "payment_processor": "payment_processor",
    "shop": "merchant",
    "ransomware": "ransomware",
    "scam": "scam",
    "phishing": "phishing",
    "sanction": "sanctioned",
    "perpetrator": "other",
    # GraphSense's `market` covers legitimate and illicit marketplaces alike (the shared packs hold
    # NFT markets such as Rarible as well as Hydra): we do not guess which; the original is kept.
    "market": "other",
    # Tether's blacklist freezes addresses for many reasons (theft, sanctions, law-enforcement requests).
    "black_list": "other",
    "user": "other",
    "service": "other",
    "organization": "other",
    "wallet_service": "other",
}

# GraphSense TagPack `abuse` (abuse taxonomy) -> ours.
TAGPACK_ABUSE: dict[str, str] = {
    "ransomware": "ransomware",
    "scam": "scam",
    "sextortion": "scam",
    "extortion": "scam",
    "ponzi_scheme": "scam",
    "pyramid_scheme": "scam",
    "investment_fraud": "scam",
    "phishing": "phishing",
    "service_hack": "hack",
    "sanction": "sanctioned",
    "terrorism": "terrorist_financing",
    "child_sexual_abuse": "child_abuse_material",
    "dark_web": "darknet_market",
    # violent extremism is not terrorist financing in law; kept as `other` with the abuse in context
    "extremism": "other",
    "money_laundering": "other",
}

# GraphSense confidence levels (graphsense-tagpack-tool src/tagpack/db/confidence.csv) -> 0-100.
TAGPACK_CONFIDENCE: dict[str, int] = {
    "override": 100,
    "ownership": 100,
    "ledger_immanent": 100,
    "manual_transaction": 90,
    "service_api": 70,
    "forensic_investigation": 70,
    "authority_data": 60,
    "trusted_provider": 50,
    "service_data": 50,
    "forensic": 50,
    "untrusted_transaction": 40,
    "web_crawl": 20,
    "heuristic": 10,
    "unknown": 5,
}


def check_category(name: str) -> str:
    """``name`` if it is a category of the taxonomy, else :class:`InvalidInput` listing the taxonomy."""
    if name not in CATEGORIES:
        raise InvalidInput(f"unknown category {name!r}", f"use one of {', '.join(CATEGORIES)}")
    return name


def check_confidence(value: int | None) -> int | None:
    if value is not None and not 0 <= value <= 100:
        raise InvalidInput(f"confidence {value} is outside 0-100", "give an integer from 0 to 100")
    return value


# A pack that says its tags are a sanctions-list entry (``ofac.yaml``: "Asset listed under US Treasury OFAC
# Sanctions List", category ``user``) is a sanctions label whatever its GraphSense category.
_SANCTIONS_LIST = re.compile(r"\bOFAC\b|\bsanctions?\s+list", re.IGNORECASE)


def from_tagpack(
    category: str | None, abuse: str | None, label: str | None = None, title: str | None = None
) -> str:
    """Our category for a TagPack tag: ``sanctioned`` when its label or pack title names a sanctions
    list; else the abuse when it maps to something specific; else the category; else ``other``."""
    if _SANCTIONS_LIST.search(f"{label or ''} {title or ''}"):
        return "sanctioned"
    if abuse is not None:
        mapped = TAGPACK_ABUSE.get(abuse, "other")
        if mapped != "other":
            return mapped
    if category is not None:
        return TAGPACK_CATEGORY.get(category, "other")
    return "other"


def tagpack_confidence(level: object) -> int | None:
    """A TagPack confidence level as 0-100; None when missing or not a level of the scale."""
    if isinstance(level, str):
        return TAGPACK_CONFIDENCE.get(level)
    return None
