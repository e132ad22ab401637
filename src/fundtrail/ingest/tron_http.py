"""Job: ingest TRON blocks from a java-tron full node's HTTP API (or a TronGrid-style gateway).

Per batch of heights: the blocks (``/wallet/getblockbylimitnext``, up to ``LIMITNEXT_MAX`` per request;
``/wallet/getblockbynum`` one by one when the node does not offer it), then for every block not stored
yet that holds transactions, its receipts (``/wallet/gettransactioninfobyblocknum``). Everything is
decoded strictly (:mod:`fundtrail.chains.tron.decode`) before anything is written, and the batch is
written by the shared account writer in one transaction: stored whole or not at all.

- Resume: without ``start``, the job starts after the highest stored height whose hash the node agrees
  with. A run stopped by an error or Ctrl-C loses only its uncommitted batch; a re-run resumes.
- Reorgs: each batch's first block must name the stored block below it as its parent, and the blocks of a
  batch must chain. When they do not, the job compares the stored tip with the node's block at that
  height, walks back to the fork point (the highest stored height whose hash the node agrees with),
  removes every stored block above it (one transaction) and ingests again from the fork point + 1.
- Follow: after reaching the node's tip, poll every ``poll_seconds`` for new blocks until interrupted.
- Retries: connection errors, timeouts, HTTP 5xx and 429 are retried with exponential backoff
  (:data:`fundtrail.ingest.jsonrpc.MAX_TRIES` tries in all); 401/403 are not. An API key goes in the
  ``TRON-PRO-API-KEY`` header and never into a message.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

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
from fundtrail.errors import CorruptData, FundtrailError, InvalidInput, SourceUnavailable
from fundtrail.ingest.jsonrpc import BACKOFF_S, MAX_BACKOFF_S, MAX_TRIES, Endpoint, parse_url
from fundtrail.ingest.progress import Progress, ProgressFn, no_progress
from fundtrail.store.account_write import (
    BLOCK_SCHEMA,
    TRANSFER_SCHEMA,
    TX_SCHEMA,
    AccountBatch,
    rollback_account_above,
    write_account_batch,
)
from fundtrail.store.db import scalar, transaction

CHAIN = "tron"
DEFAULT_PORT = 8090  # java-tron's HTTP API (FullNode); https URLs default to 443
DEFAULT_BATCH_BLOCKS = 100  # blocks per batch (one transaction)
LIMITNEXT_MAX = 100  # java-tron answers at most 100 blocks per getblockbylimitnext
DEFAULT_POLL_S = 3.0  # --follow: TRON makes a block every 3 s
TIMEOUT_S = 60.0
WALKBACK_WINDOW = 16  # stored heights compared per look while searching a fork point (doubles, capped)
MAX_UNSETTLED = 3  # batches in a row whose blocks do not chain, with nothing to roll back, before giving up
API_KEY_HEADER = "TRON-PRO-API-KEY"
UNREACHABLE_FIX = "check --url and that the node runs with its HTTP API enabled (java-tron: port 8090)"
URL_FORMS = "http://host:8090 (a java-tron full node) or https://api.trongrid.io"


@dataclass
class TronIngestSummary:
    blocks: int = 0  # blocks stored by this run
    skipped: int = 0  # blocks already stored (same hash)
    txs: int = 0
    transfers: int = 0  # transfer rows written: native, fee, token and internal
    token_transfers: int = 0  # TRC-20 Transfer logs decoded
    internal_transfers: int = 0  # internal transactions carrying TRX
    new_addresses: int = 0
    odd_transfer_logs: int = 0  # Transfer-signature logs not of the standard form, skipped
    negative_call_values: int = 0  # internal transactions with a negative callValue, skipped
    unknown_types: int = 0  # transactions of a contract type this version does not know
    missing_infos: int = 0  # transactions without a transaction info: fee unknown
    start_height: int | None = None  # first height this run looked at
    stored_tip: int | None = None  # highest height stored (and agreed with the node) at the end
    node_tip: int | None = None
    fetched: int = 0  # blocks downloaded
    info_requests: int = 0  # gettransactioninfobyblocknum requests
    limitnext: bool = True  # False: the node does not offer getblockbylimitnext, blocks came one by one
    rolled_back: int = 0  # blocks removed by reorgs
    reorgs: int = 0
    requests: int = 0  # HTTP requests answered
    retries: int = 0  # requests repeated after a transient failure

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


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0


class _Transient(Exception):
    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # "connect" or "http"


class TronClient:
    """POSTs JSON to ``<url>/wallet/<name>`` and returns the parsed answer, retrying transient failures."""

    def __init__(
        self,
        endpoint: Endpoint,
        api_key: str | None = None,
        *,
        timeout: float = TIMEOUT_S,
        tries: int = MAX_TRIES,
        backoff: float = BACKOFF_S,
        max_backoff: float = MAX_BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if tries < 1:
            raise ValueError("tries must be at least 1")
        self.endpoint = endpoint
        self.tries = tries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.stats = HttpStats()
        self.has_key = bool(api_key)
        headers = {"User-Agent": "fundtrail"}
        if api_key:
            headers[API_KEY_HEADER] = api_key
        auth = httpx.BasicAuth(*endpoint.auth) if endpoint.auth is not None else None
        self._base = endpoint.url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, transport=transport, headers=headers, auth=auth)

    def __enter__(self) -> TronClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def post(self, name: str, payload: dict[str, Any] | None = None) -> Any:
        last: _Transient | None = None
        for attempt in range(1, self.tries + 1):
            if attempt > 1:
                self.stats.retries += 1
                self.sleep(min(self.backoff * 2 ** (attempt - 2), self.max_backoff))
            try:
                return self._attempt(name, payload or {})
            except _Transient as exc:
                last = exc
        assert last is not None
        where = self.endpoint.display
        if last.kind == "connect":
            raise SourceUnavailable(
                f"cannot reach the node at {where}: {last.reason} ({self.tries} tries)", UNREACHABLE_FIX
            )
        raise SourceUnavailable(
            f"the node at {where} failed {self.tries} times on /wallet/{name}, last with {last.reason}",
            "the node is overloaded or failing (or the gateway rate-limits: give --api-key): retry later",
        )

    def _attempt(self, name: str, payload: dict[str, Any]) -> Any:
        where = self.endpoint.display
        try:
            resp = self._http.post(f"{self._base}/wallet/{name}", json=payload)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out ({type(exc).__name__})", "connect") from None
        except httpx.TransportError as exc:
            raise _Transient(str(exc) or type(exc).__name__, "connect") from None
        status = resp.status_code
        if status in (401, 403):
            raise SourceUnavailable(
                f"the node at {where} refused the request (HTTP {status})",
                "give a valid --api-key" + (" (the one given was refused)" if self.has_key else "")
                + " or user:pass in --url, or use a node that allows this host",
            )  # fmt: skip
        if status >= 500 or status == 429:
            raise _Transient(f"HTTP {status}", "http")
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
    if start is not None and start < 0:
        raise InvalidInput(f"--from {start} is negative", "give a height of 0 or more")
    if stop is not None and (stop < 0 or (start is not None and stop < start)):
        raise InvalidInput(f"--to {stop} is below --from {start or 0}", "give --to >= --from")
    if batch_size < 1:
        raise InvalidInput(f"--batch-size {batch_size} is below 1", "give a number of blocks, e.g. 100")
    if poll_seconds <= 0:
        raise InvalidInput(f"--poll-seconds {poll_seconds} is not positive", "give seconds, e.g. 3")
    job = _Job(con, client, batch_size, progress)
    try:
        job.run(start, stop, follow, poll_seconds, sleep)
    finally:
        job.summary.requests = client.stats.requests
        job.summary.retries = client.stats.retries
    return job.summary


class _Changed(Exception):
    """The node's chain changed under the batch (or the node is inconsistent): reconcile and retry."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _Job:
    def __init__(self, con: duckdb.DuckDBPyConnection, client: TronClient, batch_size: int,
                 progress: ProgressFn) -> None:  # fmt: skip
        self.con = con
        self.client = client
        self.batch_size = batch_size
        self.progress = progress
        self.summary = TronIngestSummary()
        self.source = f"tron-http:{client.endpoint.host}"
        self.where = client.endpoint.display
        self._rolled = False

    def run(self, start: int | None, stop: int | None, follow: bool, poll_seconds: float,
            sleep: Callable[[float], None]) -> None:  # fmt: skip
        nxt = start
        unsettled = 0
        while True:
            node_tip = self._node_tip()
            agreed = self._reconcile(node_tip)
            if self._rolled:
                unsettled = 0  # a reorg explained the blocks that did not chain
            if nxt is None:
                nxt = agreed + 1
            elif self._rolled:
                nxt = min(nxt, agreed + 1)  # re-ingest what the reorg removed
            self._rolled = False
            if self.summary.start_height is None:
                self.summary.start_height = nxt
            target = node_tip if stop is None else min(stop, node_tip)
            while nxt <= target:
                end = min(nxt + self.batch_size - 1, target)
                try:
                    self._batch(nxt, end)
                except _Changed as exc:
                    unsettled += 1
                    if unsettled > MAX_UNSETTLED:
                        raise CorruptData(
                            f"the node at {self.where} keeps answering blocks that do not chain ({exc.why})",
                            "check the node (a lite full node keeps no old blocks: give --from at a height "
                            f"it has); {self.summary.blocks} blocks stored so far, a re-run resumes",
                        ) from None
                    break  # look at the node again: a reorg is rolled back there
                unsettled = 0
                nxt = end + 1
                self._report(end, target)
            else:
                self.summary.stored_tip = self._stored_tip()
                if not follow or (stop is not None and nxt > stop):
                    return
                self._report(nxt - 1, target, "waiting for new blocks")
                sleep(poll_seconds)

    # -- node ------------------------------------------------------------------------------------------

    def _node_tip(self) -> int:
        answer = self.client.post("getnowblock")
        if not isinstance(answer, dict) or not answer:
            raise CorruptData(
                f"the node at {self.where} answered getnowblock without a block", f"check --url ({URL_FORMS})"
            )
        tip: int = self._decode(parse_header, answer).number
        self.summary.node_tip = tip
        return tip

    def _decode(self, fn: Callable[[Any], Any], answer: Any) -> Any:
        try:
            return fn(answer)
        except CorruptData as exc:
            raise self._rewrap(exc) from None

    def _rewrap(self, exc: FundtrailError, lo: int | None = None, hi: int | None = None) -> FundtrailError:
        exc.problem = f"the node at {self.where}: {exc.problem}"
        if lo is not None:
            exc.fix = (exc.fix + "; " if exc.fix else "") + f"nothing of heights {lo}..{hi} was stored" + (
                f"; {self.summary.blocks} blocks of earlier batches are, a re-run resumes after them"
                if self.summary.blocks else ""
            )  # fmt: skip
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

    def _infos(self, number: int) -> Any:
        self.summary.info_requests += 1
        return self.client.post("gettransactioninfobyblocknum", {"num": number})

    # -- store -----------------------------------------------------------------------------------------

    def _stored_tip(self) -> int | None:
        tip = scalar(self.con, "SELECT max(height) FROM blocks WHERE chain = ?", [CHAIN])
        return None if tip is None else int(tip)

    def _stored(self, lo: int, hi: int) -> dict[int, set[bytes]]:
        rows = self.con.execute(
            "SELECT height, hash FROM blocks WHERE chain = ? AND height BETWEEN ? AND ?", [CHAIN, lo, hi]
        ).fetchall()
        out: dict[int, set[bytes]] = {}
        for height, h in rows:
            out.setdefault(int(height), set()).add(bytes(h))
        return out

    # -- reorgs ----------------------------------------------------------------------------------------

    def _reconcile(self, node_tip: int) -> int:
        """The highest stored height the node agrees with (-1: none); rolls back what lies above it
        when the stored tip is not on the node's chain."""
        tip = self._stored_tip()
        if tip is None:
            return -1
        check = min(tip, node_tip)
        stored = self._stored(check, check).get(check)
        if stored is not None and self._node_headers(check, check).get(check) in stored:
            return check if tip <= node_tip else node_tip  # a node behind the store: nothing to undo
        fork = self._fork_point(check)
        self._rollback(fork)
        return fork

    def _fork_point(self, below: int) -> int:
        """The highest stored height <= ``below`` whose stored hash is the node's (-1: none)."""
        window = WALKBACK_WINDOW
        hi = below
        while hi >= 0:
            lo = max(hi - window + 1, 0)
            stored = self._stored(lo, hi)
            if not stored:
                lower = scalar(
                    self.con, "SELECT max(height) FROM blocks WHERE chain = ? AND height < ?", [CHAIN, lo]
                )
                if lower is None:
                    return -1
                hi = int(lower)
                continue
            node = self._node_headers(min(stored), max(stored))
            for height in sorted(stored, reverse=True):
                if node.get(height) in stored[height]:
                    return height
            hi = lo - 1
            window = min(window * 2, LIMITNEXT_MAX * 10)
        return -1

    def _rollback(self, fork: int) -> None:
        with transaction(self.con):
            n = rollback_account_above(self.con, CHAIN, fork)
        self.summary.rolled_back += n
        self.summary.reorgs += 1
        self._rolled = True
        self._report(fork, self.summary.node_tip, f"reorg: rolled back {n} blocks above height {fork}")

    # -- batches ---------------------------------------------------------------------------------------

    def _batch(self, lo: int, hi: int) -> None:
        """Store heights lo..hi. Raises _Changed when they do not chain onto the stored block below lo or
        among themselves, or when the node's chain ends below hi (the run loop then reconciles)."""
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
            raise _Changed(f"no block at height {lo + len(blocks)} below its tip")
        stored = self._stored(lo - 1, hi)
        below = stored.get(lo - 1)
        if below is not None and blocks[0].header.parent_hash not in below:
            raise _Changed(f"block {lo} does not follow the stored block {lo - 1}")
        for prev, b in itertools.pairwise(blocks):
            if b.header.parent_hash != prev.header.hash:
                raise _Changed(f"block {b.header.number} does not follow block {prev.header.number}")
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
            raise _Changed(exc.problem) from None
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

    def _report(self, height: int, target: int | None, note: str = "") -> None:
        s = self.summary
        self.progress(Progress(max(height, 0), target, s.blocks + s.skipped, s.txs, note))


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
