"""Job: ingest TRON blocks from a java-tron full node's HTTP API (or a TronGrid-style gateway).

Per batch of heights: the blocks (``/wallet/getblockbylimitnext``, up to ``LIMITNEXT_MAX`` per request;
``/wallet/getblockbynum`` one by one when the node does not offer it), then for every block not stored
yet that holds transactions, its receipts (``/wallet/gettransactioninfobyblocknum``). Everything is
decoded strictly (:mod:`fundtrail.chains.tron.decode`) before anything is written, and the batch is
written by the shared account writer in one transaction: stored whole or not at all.

Resume, reorgs and --follow are :mod:`fundtrail.ingest.follow`'s, as for Bitcoin and EVM nodes:

- Resume: without ``start``, the job starts after the highest stored height whose hash the node agrees
  with. A run stopped by an error or Ctrl-C loses only its uncommitted batch; a re-run resumes.
- Reorgs: each batch's first block must name the stored block below it as its parent, and the blocks of a
  batch must chain. When they do not, the job compares the stored tip with the node's block at that
  height, walks back to the fork point (the highest stored height whose hash the node agrees with),
  removes every stored block above it (one transaction) and ingests again from the fork point + 1.
- Follow: after reaching the node's tip, poll every ``poll_seconds`` for new blocks until interrupted.
- Retries: connection errors, timeouts, HTTP 5xx and 429 are retried with exponential backoff
  (:data:`fundtrail.ingest.http_client.MAX_TRIES` tries in all); 401/403 are not. An API key goes in the
  ``TRON-PRO-API-KEY`` header and never into a message.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Unpack

import duckdb
import httpx
import pyarrow as pa

from fundtrail.chains.tron.decode import (
    BlockRows,
    InfoMismatch,
    TransferRow,
    TxRow,
    block_rows,
    parse_block,
    parse_header,
    parse_infos,
)
from fundtrail.errors import CorruptData, FundtrailError, SourceUnavailable
from fundtrail.ingest.endpoint import Endpoint, parse_url
from fundtrail.ingest.follow import ChainChanged, Follower, FollowSummary, check_options
from fundtrail.ingest.http_client import ClientOptions, RetryingHttpClient, Transient
from fundtrail.ingest.progress import ProgressFn, no_progress
from fundtrail.store.account_write import (
    BLOCK_SCHEMA,
    TRANSFER_SCHEMA,
    TX_SCHEMA,
    AccountBatch,
    rollback_account_above,
    write_account_batch,
)

CHAIN = "tron"
DEFAULT_PORT = 8090  # java-tron's HTTP API (FullNode); https URLs default to 443
DEFAULT_BATCH_BLOCKS = 100  # blocks per batch (one transaction)
LIMITNEXT_MAX = 100  # java-tron answers at most 100 blocks per getblockbylimitnext
DEFAULT_POLL_S = 3.0  # --follow: TRON makes a block every 3 s
TIMEOUT_S = 60.0
WALKBACK_MAX = LIMITNEXT_MAX * 10  # cap on the stored heights compared per look for a fork point
MAX_UNSETTLED = 3  # batches in a row whose blocks do not chain, with nothing to roll back, before giving up
API_KEY_HEADER = "TRON-PRO-API-KEY"
UNREACHABLE_FIX = "check --url and that the node runs with its HTTP API enabled (java-tron: port 8090)"
URL_FORMS = "http://host:8090 (a java-tron full node) or https://api.trongrid.io"


@dataclass
class TronIngestSummary(FollowSummary):
    transfers: int = 0  # transfer rows written: native, fee, token and internal
    token_transfers: int = 0  # TRC-20 Transfer logs decoded
    internal_transfers: int = 0  # internal transactions carrying TRX
    new_addresses: int = 0
    odd_transfer_logs: int = 0  # Transfer-signature logs not of the standard form, skipped
    negative_call_values: int = 0  # internal transactions with a negative callValue, skipped
    unknown_types: int = 0  # transactions of a contract type this version does not know
    missing_infos: int = 0  # transactions without a transaction info: fee unknown
    info_requests: int = 0  # gettransactioninfobyblocknum requests
    limitnext: bool = True  # False: the node does not offer getblockbylimitnext, blocks came one by one

    def add(self, rows: BlockRows) -> None:
        self.token_transfers += rows.token_transfers
        self.internal_transfers += rows.internal_transfers
        self.odd_transfer_logs += rows.odd_transfer_logs
        self.negative_call_values += rows.negative_call_values
        self.unknown_types += rows.unknown_types
        self.missing_infos += rows.missing_infos


# -- HTTP client -----------------------------------------------------------------------------------------


class NotOffered(SourceUnavailable):
    """The node has no such endpoint (HTTP 404/405)."""


class TronApiError(SourceUnavailable):
    """The node answered with java-tron's ``{"Error": ...}``."""


class TronClient(RetryingHttpClient):
    """POSTs JSON to ``<url>/wallet/<name>`` and returns the parsed answer, retrying transient failures."""

    timeout_s = TIMEOUT_S
    unreachable_fix = UNREACHABLE_FIX
    overloaded_fix = (
        "the node is overloaded or failing (or the gateway rate-limits: give --api-key): retry later"
    )

    def __init__(
        self, endpoint: Endpoint, api_key: str | None = None, **options: Unpack[ClientOptions]
    ) -> None:
        self.has_key = bool(api_key)
        headers = {API_KEY_HEADER: api_key} if api_key else None
        auth = httpx.BasicAuth(*endpoint.auth) if endpoint.auth is not None else None
        super().__init__(endpoint, headers=headers, auth=auth, **options)
        self._base = endpoint.url.rstrip("/")

    def post(self, name: str, payload: dict[str, Any] | None = None) -> Any:
        return self.retrying(lambda: self._attempt(name, payload or {}), f" on /wallet/{name}")

    def _attempt(self, name: str, payload: dict[str, Any]) -> Any:
        where = self.endpoint.display
        resp = self.post_json(f"{self._base}/wallet/{name}", payload)
        status = resp.status_code
        if status in (401, 403):
            raise SourceUnavailable(
                f"the node at {where} refused the request (HTTP {status})",
                "give a valid --api-key" + (" (the one given was refused)" if self.has_key else "")
                + " or user:pass in --url, or use a node that allows this host",
            )  # fmt: skip
        if status >= 500 or status == 429:
            raise Transient(f"HTTP {status}", "http")
        if status in (404, 405):
            raise NotOffered(f"the node at {where} does not offer /wallet/{name} (HTTP {status})", URL_FORMS)
        if status != 200:
            raise SourceUnavailable(
                f"the node at {where} answered /wallet/{name} with HTTP {status}", URL_FORMS
            )
        try:
            body = resp.json()
        except ValueError:
            raise CorruptData(
                f"the node at {where} answered /wallet/{name} with something that is not JSON",
                f"check that --url points at a TRON HTTP API, e.g. {URL_FORMS}",
            ) from None
        if isinstance(body, dict) and "Error" in body:
            raise TronApiError(
                f"the node at {where} answered /wallet/{name} with an error: {str(body['Error'])[:200]}",
                "check the node's state and version",
            )
        self.stats.requests += 1
        return body


def connect_node(url: str, api_key: str | None = None, **kwargs: Any) -> TronClient:
    """A client for the node at ``url`` (http without a port: 8090; https: 443)."""
    text = url.strip()
    default_port = DEFAULT_PORT if text.lower().startswith("http://") else None
    return TronClient(parse_url(text, default_port), api_key or None, **kwargs)


# -- the job ---------------------------------------------------------------------------------------------


def ingest_tron(
    con: duckdb.DuckDBPyConnection,
    client: TronClient,
    start: int | None = None,
    stop: int | None = None,
    follow: bool = False,
    batch_size: int = DEFAULT_BATCH_BLOCKS,
    progress: ProgressFn = no_progress,
    poll_seconds: float = DEFAULT_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> TronIngestSummary:
    """Ingest the node's blocks from ``start`` (default: resume) to ``stop`` (default: its tip)."""
    check_options(start, stop, batch_size, poll_seconds, DEFAULT_BATCH_BLOCKS, DEFAULT_POLL_S)
    job = _Job(con, client, batch_size, progress)
    return job.run(start, stop, follow, poll_seconds, sleep, client.stats)


class _Job(Follower[TronIngestSummary]):
    max_restarts = MAX_UNSETTLED
    reorg_resets_restarts = True  # a reorg explained the blocks that did not chain
    walkback_max = WALKBACK_MAX

    def __init__(self, con: duckdb.DuckDBPyConnection, client: TronClient, batch_size: int,
                 progress: ProgressFn) -> None:  # fmt: skip
        super().__init__(con, CHAIN, client.endpoint.display, TronIngestSummary(), batch_size, progress)
        self.client = client
        self.source = f"tron-http:{client.endpoint.host}"

    def restarts_exhausted(self, lo: int, hi: int, why: str) -> FundtrailError:
        return CorruptData(
            f"the node at {self.where} keeps answering blocks that do not chain ({why})",
            "check the node (a lite full node keeps no old blocks: give --from at a height "
            f"it has); {self.summary.blocks} blocks stored so far, a re-run resumes",
        )

    def remove_above(self, fork: int) -> int:
        return rollback_account_above(self.con, CHAIN, fork)

    # -- node ------------------------------------------------------------------------------------------

    def ask_tip(self) -> int:
        answer = self.client.post("getnowblock")
        if not isinstance(answer, dict) or not answer:
            raise CorruptData(
                f"the node at {self.where} answered getnowblock without a block", f"check --url ({URL_FORMS})"
            )
        tip: int = self._decode(parse_header, answer).number
        return tip

    def _decode(self, fn: Callable[[Any], Any], answer: Any) -> Any:
        try:
            return fn(answer)
        except CorruptData as exc:
            raise self._rewrap(exc) from None

    def _rewrap(self, exc: FundtrailError, lo: int | None = None, hi: int | None = None) -> FundtrailError:
        exc.problem = f"the node at {self.where}: {exc.problem}"
        if lo is not None and hi is not None:
            exc.fix = (exc.fix + "; " if exc.fix else "") + self.batch_not_stored(lo, hi)
        exc.args = (exc.line(),)
        return exc

    def _blocks(self, lo: int, hi: int) -> list[Any]:
        """The node's block answers for heights lo..hi in order; shorter when its chain ends below hi."""
        out: list[Any] = []
        h = lo
        while h <= hi:
            if self.summary.limitnext:
                end = min(h + LIMITNEXT_MAX, hi + 1)  # endNum is exclusive
                try:
                    answer = self.client.post("getblockbylimitnext", {"startNum": h, "endNum": end})
                except (NotOffered, TronApiError):
                    self.summary.limitnext = False
                    continue
                if not isinstance(answer, dict):
                    raise CorruptData(
                        f"the node at {self.where} answered getblockbylimitnext {h}..{end - 1} with "
                        f"a {type(answer).__name__}", f"check --url ({URL_FORMS})",
                    )  # fmt: skip
                got = answer.get("block") or []
                if not isinstance(got, list):
                    raise CorruptData(
                        f"the node at {self.where} answered getblockbylimitnext with a 'block' that is not "
                        "a list", f"check --url ({URL_FORMS})",
                    )  # fmt: skip
                if not got:
                    one = self._block_by_num(h)  # no block: the chain ends, or the node does not serve ranges
                    if one is None:
                        return out
                    self.summary.limitnext = False
                    out.append(one)
                    h += 1
                    continue
                out += got
                h += len(got)
                if h < end:
                    return out  # the node's chain ends here
            else:
                one = self._block_by_num(h)
                if one is None:
                    return out
                out.append(one)
                h += 1
        return out

    def _block_by_num(self, h: int) -> Any:
        answer = self.client.post("getblockbynum", {"num": h})
        if isinstance(answer, dict) and not answer:
            return None  # java-tron's answer for a height it does not have
        return answer

    def _node_headers(self, lo: int, hi: int) -> dict[int, bytes]:
        return {h.number: h.hash for h in (self._decode(parse_header, b) for b in self._blocks(lo, hi))}

    def ask_hashes(self, heights: Sequence[int]) -> list[bytes | None]:
        """Asked by runs of consecutive heights: a run is one range of blocks."""
        found: dict[int, bytes] = {}
        for _, run in itertools.groupby(enumerate(sorted(heights)), lambda kh: kh[1] - kh[0]):
            run_heights = [h for _, h in run]
            found.update(self._node_headers(run_heights[0], run_heights[-1]))
        return [found.get(h) for h in heights]

    def _infos(self, number: int) -> Any:
        self.summary.info_requests += 1
        return self.client.post("gettransactioninfobyblocknum", {"num": number})

    # -- batches ---------------------------------------------------------------------------------------

    def store_batch(self, lo: int, hi: int, node_tip: int) -> None:
        """Store heights lo..hi. Raises ChainChanged when they do not chain onto the stored block below lo
        or among themselves, or when the node's chain ends below hi (the run loop then reconciles)."""
        answers = self._blocks(lo, hi)
        self.summary.fetched += len(answers)
        try:
            blocks = sorted((parse_block(a) for a in answers), key=lambda b: b.header.number)
        except CorruptData as exc:
            raise self._rewrap(exc, lo, hi) from None
        for k, b in enumerate(blocks):
            if b.header.number != lo + k:
                problem = f"asked for height {lo + k}, got block {b.header.number}"
                raise self._rewrap(CorruptData(problem, f"check --url ({URL_FORMS})"), lo, hi)
        if len(blocks) < hi - lo + 1:
            raise ChainChanged(f"no block at height {lo + len(blocks)} below its tip")
        stored = self.stored(lo - 1, hi)
        below = stored.get(lo - 1)
        if below is not None and blocks[0].header.parent_hash not in below:
            raise ChainChanged(f"block {lo} does not follow the stored block {lo - 1}")
        for prev, b in itertools.pairwise(blocks):
            if b.header.parent_hash != prev.header.hash:
                raise ChainChanged(f"block {b.header.number} does not follow block {prev.header.number}")
        new = [b for b in blocks if b.header.hash not in stored.get(b.header.number, set())]
        self.summary.skipped += len(blocks) - len(new)
        if not new:
            return
        rows: list[BlockRows] = []
        try:
            for b in new:
                infos = parse_infos(b, self._infos(b.header.number)) if b.txs else {}
                rows.append(block_rows(b, infos))
        except InfoMismatch as exc:
            raise ChainChanged(exc.problem) from None
        except CorruptData as exc:
            raise self._rewrap(exc, lo, hi) from None
        result = write_account_batch(self.con, account_batch(rows, self.source))
        s = self.summary
        s.blocks += result.blocks
        s.skipped += result.skipped
        s.txs += result.txs
        s.transfers += result.transfers
        s.new_addresses += result.new_addresses
        for r in rows:
            s.add(r)


# -- Arrow -----------------------------------------------------------------------------------------------


def account_batch(rows: Sequence[BlockRows], source: str) -> AccountBatch:
    """The writer's batch for decoded blocks: raw keys, 32-byte hashes, amounts as decimal strings."""
    txs: list[TxRow] = [t for r in rows for t in r.txs]
    transfers: list[TransferRow] = [t for r in rows for t in r.transfers]
    blocks = pa.table(
        {
            "number": [r.header.number for r in rows],
            "hash": [r.header.hash for r in rows],
            "parent_hash": [r.header.parent_hash for r in rows],
            "time": [r.header.time for r in rows],
            "tx_count": [len(r.txs) for r in rows],
            "miner": [r.header.witness for r in rows],
            "gas_used": [None] * len(rows),
            "base_fee": [None] * len(rows),
            "size": [None] * len(rows),
        },
        schema=BLOCK_SCHEMA,
    )
    tx_table = pa.table(
        {
            "block_number": [t.block_number for t in txs],
            "position": [t.position for t in txs],
            "hash": [t.hash for t in txs],
            "from": [t.sender for t in txs],
            "to": [t.to for t in txs],
            "created": [t.created for t in txs],
            "value": [str(t.value) for t in txs],
            "nonce": [None] * len(txs),
            "gas": [t.gas for t in txs],
            "gas_price": [None] * len(txs),
            "gas_used": [t.gas_used for t in txs],
            "fee": [None if t.fee is None else str(t.fee) for t in txs],
            "status": [t.status for t in txs],
            "tx_type": [t.tx_type for t in txs],
            "method": [t.method for t in txs],
        },
        schema=TX_SCHEMA,
    )
    transfer_table = pa.table(
        {
            "tx_hash": [t.tx_hash for t in transfers],
            "block_number": [t.block_number for t in transfers],
            "kind": [t.kind for t in transfers],
            "log_index": [t.log_index for t in transfers],
            "trace_position": [t.trace_position for t in transfers],
            "contract": [t.contract for t in transfers],
            "from": [t.sender for t in transfers],
            "to": [t.to for t in transfers],
            "amount": [str(t.amount) for t in transfers],
        },
        schema=TRANSFER_SCHEMA,
    )
    return AccountBatch(CHAIN, blocks, tx_table, transfer_table, source)
