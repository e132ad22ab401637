"""Attribution labels on the real shared lists: every GraphSense TagPack, the OFAC per-asset lists with their
entity metadata, OFAC XML fixtures in the official structures, CSV, and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from fundtrail.chains.bitcoin.address import parse_address
from fundtrail.chains.bitcoin.network import MAINNET
from fundtrail.chains.evm.address import evm_address
from fundtrail.chains.registry import CHAINS
from fundtrail.errors import CorruptData, InvalidInput, NotFound
from fundtrail.labels import codecs
from fundtrail.labels.csv_import import import_csv
from fundtrail.labels.ofac import import_ofac_lists, import_ofac_xml
from fundtrail.labels.store import (
    add_label,
    address_ids_with_category,
    delete_label,
    edit_label,
    labels_for_address_ids,
    labels_for_keys,
    labels_version,
    list_labels,
)
from fundtrail.labels.tagpack import import_tagpacks
from fundtrail.labels.taxonomy import CATEGORIES, TAGPACK_CATEGORY, from_tagpack
from fundtrail.store.db import connect
from tests.conftest import DATA, ROOT

LABELS = DATA / "labels"
PACKS = LABELS / "graphsense-tagpacks" / "packs"
OFAC_LISTS = LABELS / "ofac-sanctioned"
ENTITIES = LABELS / "ofac-sanctioned-entities" / "sanctioned-addresses.json"
FIXTURES = ROOT / "tests" / "fixtures" / "labels"
TOTAL_TAGS = 235_751
# packs where some tags do not import: counted independently below with the strict codecs of chains/
PACKS_WITH_SKIPS = (
    "etherscamdb_tagpack",
    "exchange-wallets-bitfinexcom",
    "exchange-wallets-kucoin",
    "plustoken",
    "tornado_cash",
    "sextortion_excello",
)


def pack_summary() -> dict[str, int]:
    """Tags per pack, from the data set's PACK_SUMMARY.txt."""
    out = {}
    for line in (LABELS / "graphsense-tagpacks" / "PACK_SUMMARY.txt").read_text().splitlines():
        m = re.match(r"^packs/(\S+)\.yaml\t(\d+) tags", line)
        if m:
            out[Path(m.group(1)).name] = int(m.group(2))
    return out


def expected_imports(stem: str) -> int:
    """Tags of a pack with an address that parses (strict codecs of chains/, chain from the currency or,
    when that fails, from the format; currencies of chains fundtrail does not ingest kept as given), minus
    repeats of the same (chain, address, label, category, abuse)."""
    path = next(PACKS.rglob(f"{stem}.yaml"))
    doc = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    header = {k: v for k, v in doc.items() if k != "tags"}
    ingested = {
        "BTC": "bitcoin",
        "ETH": "ethereum",
        "TRX": "tron",
        "BSC": "bsc",
        "BEP20": "bsc",
        "MATIC": "polygon",
        "AVAX": "avalanche",
    }
    seen = set()
    for tag in doc["tags"]:
        t = {**header, **tag}
        addr, cur = str(t["address"]).strip(), str(t["currency"]).upper()
        candidates = [ingested[cur]] if cur in ingested else []
        if cur in ingested or cur in ("USDT", "USDC"):
            evm = candidates[0] if candidates and CHAINS[candidates[0]].family == "evm" else "ethereum"
            candidates += [evm, "tron", "bitcoin"]
            ident = None
            for chain in candidates:
                try:
                    ident = (chain, CHAINS[chain].parse(addr))
                    break
                except InvalidInput:
                    continue
            if ident is None:
                continue
        elif any(c.isspace() for c in addr):
            continue
        else:
            ident = (cur, addr)
        seen.add((*ident, t["label"], t.get("category"), t.get("abuse")))
    return len(seen)


@pytest.fixture(scope="module")
def packs_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Any]]]:
    path = tmp_path_factory.mktemp("labels") / "labels.duckdb"
    con = connect(path)
    reports = import_tagpacks(con, PACKS)
    con.close()
    yield path, reports


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect(tmp_path / "s.duckdb")
    yield c
    c.close()


def count(c: duckdb.DuckDBPyConnection, where: str = "TRUE", params: list[Any] | None = None) -> int:
    return int(c.execute(f"SELECT count(*) FROM labels WHERE {where}", params or []).fetchall()[0][0])


# ---------------------------------------------------------------- TagPacks


def test_all_tagpacks_import_with_exact_counts(packs_db: tuple[Path, list[Any]]) -> None:
    path, reports = packs_db
    summary = pack_summary()
    assert len(reports) == len(summary) == 72 and sum(summary.values()) == TOTAL_TAGS
    by_stem = {r.source.removeprefix("tagpack:"): r for r in reports}
    assert by_stem.keys() == summary.keys()
    for stem, r in by_stem.items():
        assert r.imported + sum(r.skipped.values()) == summary[stem], stem  # every tag accounted for
        if stem in PACKS_WITH_SKIPS:
            assert r.imported == expected_imports(stem) < summary[stem], stem
        else:
            assert r.imported == summary[stem] and not r.skipped, stem
    c = connect(path, read_only=True)
    try:
        assert count(c) == sum(r.imported for r in reports) == 235_706
        rows = c.execute("SELECT source, count(*) FROM labels GROUP BY 1").fetchall()
        assert {s.removeprefix("tagpack:"): n for s, n in rows} == {s: r.imported for s, r in by_stem.items()}
        assert c.execute("SELECT source, tag_count FROM label_sources").fetchall() == [] or {
            s: n for s, n in c.execute("SELECT source, tag_count FROM label_sources").fetchall()
        } == {r.source: r.imported for r in reports}
        assert {r[0] for r in c.execute("SELECT DISTINCT category FROM labels").fetchall()} <= set(CATEGORIES)
        # ingested chains carry a key; chains fundtrail does not ingest carry none
        assert count(c, "chain IN ('bitcoin', 'ethereum', 'tron', 'bsc') AND key IS NULL") == 0
        assert count(c, "chain IN ('litecoin', 'monero') AND key IS NOT NULL") == 0
        assert count(c, "chain = 'litecoin'") == 56 and count(c, "chain = 'monero'") == 36
        assert count(c, "chain = 'bitcoin'") == 213_113
    finally:
        c.close()


def test_fast_codecs_agree_with_the_strict_ones(packs_db: tuple[Path, list[Any]]) -> None:
    c = connect(packs_db[0], read_only=True)
    try:
        btc = c.execute(
            "SELECT address, key FROM labels WHERE chain = 'bitcoin' AND label_id % 7 = 0"
        ).fetchall()
        eth = c.execute(
            "SELECT address, key FROM labels WHERE chain = 'ethereum' AND context NOT LIKE '%EIP-55%'"
        ).fetchall()
        bad_eth = c.execute("SELECT address FROM labels WHERE context LIKE '%wrong EIP-55%'").fetchall()
    finally:
        c.close()
    assert len(btc) > 30_000
    assert all(parse_address(a, MAINNET) == bytes(k) for a, k in btc)
    assert all(evm_address(bytes(k)) == a for a, k in eth[::5])
    assert len(bad_eth) == 2  # kept as given, flagged
    for a in ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"):
        assert codecs.bitcoin_segwit_key(a) or codecs.bitcoin_base58_key(a) == parse_address(a, MAINNET)
    rejected = (
        "1BoatSLRHtKNngkdXEeobR76b53LETtpyU",  # checksum
        "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ",  # upper case: left to the strict codec
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdx",  # checksum
        "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",  # another network
        "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn",  # testnet base58
        # bech32 (not bech32m) checksum on a v1 program (BIP350 test vector)
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7k7grplx",
    )
    for a in rejected:
        assert codecs.bitcoin_segwit_key(a) is None and codecs.bitcoin_base58_key(a) is None, a


def test_pack_fields_are_inherited_and_overridden(packs_db: tuple[Path, list[Any]]) -> None:
    c = connect(packs_db[0], read_only=True)
    try:
        demo = labels_for_keys(c, "bitcoin", [parse_address("1Archive1n2C579dMsAu3iC6tWzuQJz8dN", MAINNET)])
        (lb,) = next(iter(demo.values()))
        assert (lb["label"], lb["category"], lb["confidence"], lb["is_cluster_definer"]) == (
            "Internet Archive",
            "other",
            50,
            True,
        )
        assert lb["last_seen"] == "2021-11-12T00:00:00Z" and lb["first_seen"] is None
        assert lb["context"]["source"] == "https://archive.org/donate/cryptocurrency"
        assert lb["context"]["tagpack_category"] == "organization" and lb["source"] == "tagpack:demo"
        # hacks.yaml: pack sets currency, confidence (web_crawl); the tag sets label, source and abuse
        key = parse_address("1LY2Y3mL64bxPJmzEa1e6hwK42ojfXnQ5E", MAINNET)
        hack = [x for x in labels_for_keys(c, "bitcoin", [key])[key] if x["source"] == "tagpack:hacks"]
        assert [(x["label"], x["category"], x["confidence"], x["is_cluster_definer"]) for x in hack] == [
            ("Bitfinex hack", "hack", 20, False)
        ]
        assert (
            hack[0]["context"]["source"]
            == "https://gist.github.com/MrChrisJ/4a959a51a0d2be356cc2e89566fc1d87"
        )
        # defi fraud: tag-level abuse and lastmod override the pack's label-only defaults
        key = bytes.fromhex("e5b913f91f2b90c5cd04d711e1eb3214c56dba98")
        (fraud,) = [x for x in labels_for_keys(c, "ethereum", [key])[key] if x["source"].endswith("thesis")]
        assert (fraud["label"], fraud["category"], fraud["last_seen"]) == (
            "defi fraud",
            "phishing",
            "2022-02-20T00:00:00Z",
        )
        # usdt_blacklist: the tag's JSON context is kept, parsed
        key = bytes.fromhex("008fe40574e881e7247b50b991c0cc057d66647f")
        (bl,) = [x for x in labels_for_keys(c, "ethereum", [key])[key] if x["source"].endswith("blacklist")]
        assert bl["context"]["tag_context"]["token"] == "USDT" and bl["confidence"] == 100
        assert bl["context"]["tagpack_category"] == "black_list" and bl["category"] == "other"
    finally:
        c.close()


def test_reimport_replaces_without_duplicates(packs_db: tuple[Path, list[Any]], tmp_path: Path) -> None:
    work = tmp_path / "copy.duckdb"
    work.write_bytes(packs_db[0].read_bytes())
    c = connect(work)
    try:
        before, version = count(c), labels_version(c)
        n_hacks = count(c, "source = 'tagpack:hacks'")
        for name in ("hacks.yaml", "ofac.yaml", "tornado_cash.yaml"):
            import_tagpacks(c, PACKS / name)
        assert count(c) == before and count(c, "source = 'tagpack:hacks'") == n_hacks
        assert labels_version(c) != version
        dup = c.execute(
            "SELECT count(*) FROM (SELECT source, chain, address, label, category FROM labels "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchall()[0][0]
        assert dup == 0
        assert c.execute("SELECT count(*) FROM label_sources").fetchall()[0][0] == 72
    finally:
        c.close()


def test_category_mapping() -> None:
    assert from_tagpack("exchange", None) == "exchange"
    assert from_tagpack("coinjoin", None) == from_tagpack("mixing_service", None) == "mixer"
    assert from_tagpack("user", "sextortion") == "scam" and from_tagpack(None, "ransomware") == "ransomware"
    assert from_tagpack("exchange", "extremism") == "exchange"  # an abuse we keep as `other` does not win
    assert from_tagpack("something_new", None) == "other" and from_tagpack(None, None) == "other"
    # ofac.yaml's own wording: a sanctions-list entry, whatever its GraphSense category
    assert from_tagpack("user", None, "Asset listed under US Treasury OFAC Sanctions List") == "sanctioned"
    assert from_tagpack("user", None, "Alice", "US Treasury OFAC Sanctions List") == "sanctioned"
    assert from_tagpack("user", None, "Profit sharing scheme") == "other"
    assert set(TAGPACK_CATEGORY.values()) <= set(CATEGORIES)
    assert len(CATEGORIES) == 18


# ---------------------------------------------------------------- OFAC


def test_every_address_of_the_ofac_lists_is_labelled_sanctioned(con: duckdb.DuckDBPyConnection) -> None:
    reports = import_ofac_lists(con, OFAC_LISTS, ENTITIES)
    assert sum(r.imported for r in reports) == 654 and not any(r.skipped for r in reports)
    chains = {"XBT": "bitcoin", "ETH": "ethereum", "TRX": "tron", "BSC": "bsc", "ARB": "arbitrum"}
    for f in sorted(OFAC_LISTS.glob("sanctioned_addresses_*.txt")):
        asset = f.stem.removeprefix("sanctioned_addresses_")
        for addr in (a.strip() for a in f.read_text().splitlines() if a.strip()):
            rows = con.execute(
                "SELECT chain, category, confidence, is_cluster_definer FROM labels "
                "WHERE source = ? AND lower(address) = lower(?)",
                [f"ofac-list:{asset}", addr],
            ).fetchall()
            assert len(rows) == 1, (asset, addr)
            chain, category, confidence, definer = rows[0]
            assert (category, confidence, definer) == ("sanctioned", 100, True)
            if addr == "TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq":
                assert chain == "tron"  # OFAC filed it as XBT
            elif asset in ("USDT", "USDC"):
                assert chain == (
                    "ethereum" if addr.startswith("0x") else "tron" if addr[0] == "T" else "bitcoin"
                )
            else:
                assert chain == chains.get(asset, chain), (asset, addr)
    usdt = con.execute(
        "SELECT chain, count(*) FROM labels WHERE source = 'ofac-list:USDT' GROUP BY 1"
    ).fetchall()
    assert dict(usdt) == {"ethereum": 8, "bitcoin": 7, "tron": 11}
    omni = con.execute(
        "SELECT context FROM labels WHERE source = 'ofac-list:USDT' AND chain = 'bitcoin'"
    ).fetchall()
    assert all(json.loads(x)["asset"] == "USDT-Omni" for (x,) in omni)
    # Ethereum: the lower-case and the EIP-55 forms find the same label; entity metadata joined
    key = bytes.fromhex("098b716b8aaf21512996dc57eb0615e2383e2f96")
    (lz,) = labels_for_keys(con, "ethereum", [key])[key]
    assert lz["address"] == "0x098B716B8Aaf21512996dC57EB0615e2383E2f96" and lz["label"] == "LAZARUS GROUP"
    assert lz["context"]["programs"] == ["DPRK3"] and lz["context"]["currency"] == "ETH"
    assert list_labels(con, chain="ethereum", address="0x098b716b8aaf21512996dc57eb0615e2383e2f96").total == 1
    (tw,) = [x for x in list_labels(con, address="TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq").labels]
    assert tw["label"] == "Mingming WANG" and tw["context"]["currency"] == "XBT" and tw["chain"] == "tron"
    # a re-import replaces: same count
    import_ofac_lists(con, OFAC_LISTS / "sanctioned_addresses_XBT.txt")
    assert count(con) == 654 and count(con, "source = 'ofac-list:XBT'") == 435


def test_ofac_xml_both_formats(con: duckdb.DuckDBPyConnection) -> None:
    (adv,) = import_ofac_xml(con, FIXTURES / "sdn_advanced.xml")
    (cls,) = import_ofac_xml(con, FIXTURES / "sdn.xml")
    assert (adv.source, adv.imported, cls.source, cls.imported) == (
        "ofac-xml:sdn_advanced",
        9,
        "ofac-xml:sdn",
        5,
    )
    rows = con.execute(
        "SELECT source, chain, address, label, context FROM labels ORDER BY label_id"
    ).fetchall()
    got = {(s, ch, a): (lb, json.loads(cx)) for s, ch, a, lb, cx in rows}
    lz = got[("ofac-xml:sdn_advanced", "ethereum", "0x098B716B8Aaf21512996dC57EB0615e2383E2f96")]
    assert lz[0] == "LAZARUS GROUP" and lz[1]["programs"] == ["DPRK3"] and lz[1]["akas"] == ["HIDDEN COBRA"]
    assert got[("ofac-xml:sdn_advanced", "tron", "TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq")][0] == "Mingming WANG"
    assert (
        got[("ofac-xml:sdn_advanced", "bitcoin", "16iWn2J1McqjToYLHSsAyS6En3QA8YQ91H")][1]["asset"]
        == "USDT-Omni"
    )
    assert (
        "ofac-xml:sdn_advanced",
        "monero",
        "884Bz8UH63aYsjVdkfWfScRYWZGGNbjFL7pztqvWNSrtYT4reFSwyvkCj9KEGUtheHhhMUj87ciTBFyzoesrMJ4L1FvSoxL",
    ) in got
    wang = got[("ofac-xml:sdn", "tron", "TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq")]
    assert wang == (
        "Mingming WANG",
        {
            "currency": "XBT",
            "list": "OFAC SDN",
            "programs": ["ILLICIT-DRUGS-EO14059"],
            "publish_date": "09/27/2024",
            "sdn_uid": "45404",
        },
    )
    assert ("ofac-xml:sdn", "ethereum", "0xFAC583C0cF07Ea434052c49115a4682172aB6b4F") in got
    import_ofac_xml(con, FIXTURES / "sdn.xml")
    assert count(con) == 14


def test_xml_bomb_is_refused_and_nothing_written(con: duckdb.DuckDBPyConnection) -> None:
    import_ofac_xml(con, FIXTURES / "sdn.xml")
    version = labels_version(con)
    with pytest.raises(CorruptData, match="DTD or entities"):
        import_ofac_xml(con, FIXTURES / "billion_laughs.xml")
    assert labels_version(con) == version and count(con) == 5


# ---------------------------------------------------------------- CSV, add/edit/delete, lookups


def test_csv_import_and_reimport(con: duckdb.DuckDBPyConnection) -> None:
    reports = import_csv(con, FIXTURES / "labels.csv")
    assert {r.source: r.imported for r in reports} == {"case-2024-17": 3, "tips": 2}
    import_csv(con, FIXTURES / "labels.csv")
    assert count(con) == 5
    key = bytes.fromhex("098b716b8aaf21512996dc57eb0615e2383e2f96")
    got = labels_for_keys(con, "ethereum", [key, b"\x00" * 20])
    assert list(got) == [key] and [x["label"] for x in got[key]] == [
        "Ronin bridge exploiter",
        "Lazarus Group",
    ]
    assert got[key][1]["confidence"] is None and got[key][1]["context"] == {
        "note": "seen in the Ronin case file"
    }
    (ltc,) = list_labels(con, chain="litecoin").labels
    assert ltc["address"] == "LNf2JDiuunBz7GMDKFYHN4rq5meXWxiwfb"
    assert con.execute("SELECT key FROM labels WHERE chain = 'litecoin'").fetchall() == [(None,)]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("bitcoin,1BoatSLRHtKNngkdXEeobR76b53LETtpyU,x,scam,s,1", r"line 3, field address"),
        ("ethereum,0x098B716B8Aaf21512996dC57EB0615e2383E2f9F,x,scam,s,1", r"line 3, field address.*EIP-55"),
        (
            "bitcoin,1BoatSLRHtKNngkdXEeobR76b53LETtpyT,x,bogus,s,1",
            r"line 3, field category.*exchange, mixer",
        ),
        ("bitcoin,1BoatSLRHtKNngkdXEeobR76b53LETtpyT,x,scam,s,101", r"line 3, field confidence"),
        ("bitcoin,1BoatSLRHtKNngkdXEeobR76b53LETtpyT,,scam,s,1", r"line 3, field label"),
        (
            "bitcoin,1BoatSLRHtKNngkdXEeobR76b53LETtpyT,x,scam,tagpack:ofac,1",
            r"line 3, field source.*reserved",
        ),
        ("Bitcoin!,1BoatSLRHtKNngkdXEeobR76b53LETtpyT,x,scam,s,1", r"line 3, field chain"),
        ("bitcoin,1BoatSLRHtKNngkdXEeobR76b53LETtpyT,x,scam,s", r"line 3: 5 fields"),
        ("tron,1BoatSLRHtKNngkdXEeobR76b53LETtpyT,x,scam,s,1", r"line 3, field address"),
    ],
)
def test_csv_bad_rows_write_nothing(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, row: str, message: str
) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(
        "chain,address,label,category,source,confidence\n"
        "bitcoin,1BoatSLRHtKNngkdXEeobR76b53LETtpyT,good row,exchange,s,50\n" + row + "\n"
    )
    with pytest.raises(InvalidInput, match=message) as exc:
        import_csv(con, f)
    assert "nothing was imported" in str(exc.value) and "\n" not in str(exc.value)
    assert count(con) == 0


def test_csv_header_must_match(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    f = tmp_path / "h.csv"
    f.write_text("address,chain,label,category,source,confidence\n")
    with pytest.raises(InvalidInput, match="header"):
        import_csv(con, f)


def test_add_edit_delete_lookups_and_version(con: duckdb.DuckDBPyConnection) -> None:
    v0 = labels_version(con)
    lb = add_label(con, "ethereum", "0x098b716b8aaf21512996dc57eb0615e2383e2f96", "Lazarus", "hack", 80)
    assert lb["address"] == "0x098B716B8Aaf21512996dC57EB0615e2383E2f96" and lb["source"] == "manual"
    v1 = labels_version(con)
    other = add_label(
        con, "bitcoin", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "boat", "exchange", is_cluster_definer=True
    )
    key_eth = bytes.fromhex("098b716b8aaf21512996dc57eb0615e2383e2f96")
    con.execute(
        "INSERT INTO addresses VALUES ('ethereum', 7, ?), ('bitcoin', 8, ?), ('ethereum', 9, ?)",
        [key_eth, parse_address("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", MAINNET), b"\x11" * 20],
    )
    assert address_ids_with_category(con, "ethereum", "hack") == [7]
    assert address_ids_with_category(con, "bitcoin", "exchange") == [8]
    assert address_ids_with_category(con, "ethereum", "exchange") == []
    with pytest.raises(InvalidInput, match="unknown category"):
        address_ids_with_category(con, "ethereum", "hacks")
    by_id = labels_for_address_ids(con, "ethereum", [7, 9, 8])
    assert list(by_id) == [7] and by_id[7][0]["label_id"] == lb["label_id"]
    assert set(by_id[7][0]) == {
        "label_id",
        "label",
        "category",
        "source",
        "confidence",
        "first_seen",
        "last_seen",
        "is_cluster_definer",
        "context",
        "address",
        "chain",
    }
    edited = edit_label(
        con, lb["label_id"], category="sanctioned", context={"case": 7}, is_cluster_definer=True
    )
    assert (edited["category"], edited["context"], edited["is_cluster_definer"], edited["label"]) == (
        "sanctioned",
        {"case": 7},
        True,
        "Lazarus",
    )
    v2 = labels_version(con)
    delete_label(con, other["label_id"])
    v3 = labels_version(con)
    assert len({v0, v1, v2, v3}) == 4
    with pytest.raises(NotFound):
        delete_label(con, other["label_id"])
    with pytest.raises(InvalidInput, match="EIP-55"):
        add_label(con, "ethereum", "0x098B716B8Aaf21512996dC57EB0615e2383E2f9F", "x", "hack")
    with pytest.raises(InvalidInput, match="outside 0-100"):
        edit_label(con, lb["label_id"], confidence=101)
    assert labels_version(con) == v3 and count(con) == 1
    add_label(
        con,
        "monero",
        "884Bz8UH63aYsjVdkfWfScRYWZGGNbjFL7pztqvWNSrtYT4reFSwyvkCj9KEGUtheHhhMUj87ciTBFyzoesrMJ4L1FvSoxL",
        "SouthFront",
        "sanctioned",
    )
    assert list_labels(con, chain="monero").labels[0]["label"] == "SouthFront"
    trunc = list_labels(con, limit=1)
    assert trunc.truncated and trunc.total == 2 and len(trunc.labels) == 1


# ---------------------------------------------------------------- CLI


def run(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FUNDTRAIL_DB"}
    env["COLUMNS"] = "200"
    argv = [sys.executable, "-m", "fundtrail", "--db", str(db), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def test_cli_labels(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    r = run("labels", "import", "csv", str(FIXTURES / "labels.csv"), db=db)
    assert r.returncode == 0, r.stderr
    assert "case-2024-17" in r.stdout and "tips" in r.stdout
    r = run(
        "labels",
        "add",
        "--chain",
        "ethereum",
        "0x2f389ce8bd8ff92de3402ffce4691d17fc4f6535",
        "--label",
        "SUEX",
        "--category",
        "sanctioned",
        "--confidence",
        "90",
        "--definer",
        "--json",
        db=db,
    )
    assert r.returncode == 0, r.stderr
    added = json.loads(r.stdout)
    assert (added["label_id"], added["is_cluster_definer"], added["confidence"]) == (6, True, 90)
    r = run(
        "labels",
        "edit",
        "6",
        "--label",
        "SUEX OTC",
        "--no-definer",
        "--context",
        '{"case": 3}',
        "--json",
        db=db,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["label"] == "SUEX OTC" and json.loads(r.stdout)["context"] == {"case": 3}
    r = run("labels", "list", "--chain", "ethereum", "--json", db=db)
    listed = json.loads(r.stdout)
    assert listed["total"] == 3 and not listed["truncated"]
    r = run("labels", "list", "--limit", "2", db=db)
    assert r.returncode == 0 and "truncated: showing 2 of 6 labels" in r.stdout
    r = run(
        "labels", "list", "--category", "sanctioned", "--address", "TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq", db=db
    )
    assert "Mingming WANG" in r.stdout
    r = run("labels", "delete", "6", db=db)
    assert r.returncode == 0, r.stderr
    r = run("labels", "delete", "6", db=db)
    assert r.returncode == 3 and r.stderr.startswith("error: no label with id 6")
    r = run(
        "labels",
        "add",
        "--chain",
        "bitcoin",
        "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
        "--label",
        "x",
        "--category",
        "casino",
        db=db,
    )
    assert r.returncode == 2 and "exchange, mixer" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("labels", "import", "ofac-xml", str(FIXTURES / "billion_laughs.xml"), db=db)
    assert r.returncode == 4 and "DTD" in r.stderr
    r = run("labels", "list", "--json", db=db)
    assert json.loads(r.stdout)["total"] == 5  # nothing written by the failures
    r = run(
        "labels",
        "import",
        "ofac-list",
        str(OFAC_LISTS / "sanctioned_addresses_USDT.txt"),
        "--entities",
        str(ENTITIES),
        "--json",
        db=db,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["imported"] == 26


def test_timestamps_are_utc(con: duckdb.DuckDBPyConnection) -> None:
    lb = add_label(
        con,
        "bitcoin",
        "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
        "x",
        "other",
        first_seen=dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    )
    assert lb["first_seen"] == "2020-01-02T03:04:05Z" and lb["last_seen"] is None
