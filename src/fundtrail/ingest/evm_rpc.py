"""Job: ingest an EVM chain (Ethereum, BSC, Polygon, ...) from a node's standard JSON-RPC.

Per batch of heights, all in batched requests: ``eth_getBlockByNumber(n, true)`` for the blocks not
stored yet (together with the header at the stored tip, which detects reorgs), their receipts
(``eth_getBlockReceipts``, or ``eth_getTransactionReceipt`` per transaction where the node lacks it), their
traces (``trace_block``, else ``debug_traceBlockByNumber`` with geth's ``callTracer``, else none: the
method is chosen once per run) and, for token contracts fundtrail knows nothing about, ``decimals()``,
``symbol()`` and ``name()`` via ``eth_call``. Everything is parsed strictly
(:mod:`fundtrail.chains.evm.rpc_decode`), checked to chain (each block's parent hash is the block below)
and written as one :class:`~fundtrail.store.account_write.AccountBatch`: a batch is stored whole or not.

Resume, reorgs and --follow are :mod:`fundtrail.ingest.follow`'s, as for Bitcoin and TRON: a run starts after
the highest stored height whose hash the node agrees with; a stored tip the node no longer has is walked
back to the fork point, rolled back in one transaction and ingested again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from fundtrail.chains.assets import token
from fundtrail.chains.evm import rpc_decode as rd
from fundtrail.errors import CorruptData, FundtrailError, InvalidInput
from fundtrail.ingest.follow import ChainChanged, Follower, FollowSummary
from fundtrail.ingest.follow import check_options as follow_options
from fundtrail.ingest.jsonrpc import JsonRpcClient, RpcError, parse_url
from fundtrail.ingest.progress import ProgressFn, no_progress
from fundtrail.store.account_write import (
    BEACON,
    BLOCK_SCHEMA,
    TRANSFER_SCHEMA,
    TX_SCHEMA,
    AccountBatch,
    rollback_account_above,
    write_account_batch,
)
from fundtrail.store.assets import ContractMetadata, contracts_with_metadata, set_contract_metadata
from fundtrail.store.db import transaction

CHAIN_IDS = {"ethereum": 1, "bsc": 56, "polygon": 137, "arbitrum": 42161, "optimism": 10, "base": 8453,
             "avalanche": 43114, "anvil": 31337}  # fmt: skip
DEFAULT_BATCH_BLOCKS = 20  # blocks per batch (one transaction)
BLOCKS_PER_REQUEST = 10  # full blocks, block receipts or block traces per HTTP request
RECEIPTS_PER_REQUEST = 100  # eth_getTransactionReceipt calls per HTTP request (the fallback)
CALLS_PER_REQUEST = 150  # eth_call per HTTP request (3 per token contract)
DEFAULT_POLL_S = 5.0  # --follow: seconds between looks at the node's tip
MAX_RESTARTS = 5  # a batch started again this often in a row (blocks that do not chain) is an error
DEFAULT_PORT = 8545
UNREACHABLE_FIX = "check --url and that the node serves JSON-RPC over HTTP (geth: --http)"
SELECTORS = rd.METADATA_SELECTORS  # symbol(), decimals(), name()
TRACE_METHODS = ("trace_block", "debug_traceBlockByNumber")
CALL_TRACER = {"tracer": "callTracer"}


@dataclass
class EvmRpcSummary(FollowSummary):
    chain: str
    transfers: int = 0  # every transfer row written (native, fee, token, internal, withdrawal)
    token_transfers: int = 0
    internal_transfers: int = 0
    withdrawals: int = 0
    transfer_logs_skipped: int = 0  # Transfer-signature logs not of the 3-topic ERC-20 form (e.g. ERC-721)
    new_addresses: int = 0
    new_assets: int = 0
    tokens_asked: int = 0  # token contracts asked for decimals()/symbol()/name()
    tokens_described: int = 0  # ... that answered at least one of them
    receipts: str = "none needed"  # eth_getBlockReceipts or eth_getTransactionReceipt
    traces: str = "not checked"  # trace_block, debug_traceBlockByNumber or unavailable
    traces_unreadable: int = 0  # value-moving trace frames the node did not state in full


def chain_id(chain: str) -> int:
    """The EIP-155 chain id of ``--chain``; an unknown name is invalid input."""
    if chain not in CHAIN_IDS:
        raise InvalidInput(
            f"--chain {chain!r} is not an EVM chain fundtrail knows", f"use one of {', '.join(CHAIN_IDS)}"
        )
    return CHAIN_IDS[chain]


def check_options(
    chain: str, start: int | None, stop: int | None, batch_size: int, poll_seconds: float
) -> None:
    """The job's options, checked before anything is opened or asked (invalid input names the option)."""
    chain_id(chain)
    follow_options(
        start, stop, batch_size, poll_seconds, DEFAULT_BATCH_BLOCKS, DEFAULT_POLL_S, "block number"
    )


def connect_node(url: str) -> JsonRpcClient:
    """A client for the node at ``url`` (default port 8545)."""
    return JsonRpcClient(parse_url(url, DEFAULT_PORT), unreachable_fix=UNREACHABLE_FIX)


def fetch_token_metadata(client: JsonRpcClient, contracts: Iterable[bytes]) -> list[ContractMetadata]:
    """``symbol()``, ``decimals()`` and ``name()`` of token contracts via ``eth_call`` (batched, at the
    node's latest block). A call that reverts or answers something that does not decode gives None."""
    order = sorted(set(contracts))
    calls = [
        ("eth_call", [{"to": "0x" + c.hex(), "data": sel}, "latest"]) for c in order for sel in SELECTORS
    ]
    answers: list[Any] = []
    for i in range(0, len(calls), CALLS_PER_REQUEST):
        answers += client.batch(calls[i : i + CALLS_PER_REQUEST], return_errors=True)
    return [ContractMetadata(c, *rd.decode_metadata(answers[3 * k : 3 * k + 3])) for k, c in enumerate(order)]


def ingest_evm_rpc(
    con: duckdb.DuckDBPyConnection,
    client: JsonRpcClient,
    chain: str,
    start: int | None = None,
    stop: int | None = None,
    follow: bool = False,
    batch_size: int = DEFAULT_BATCH_BLOCKS,
    progress: ProgressFn = no_progress,
    poll_seconds: float = DEFAULT_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> EvmRpcSummary:
    """Ingest the node's blocks from ``start`` (default: resume) to ``stop`` (default: its tip)."""
    check_options(chain, start, stop, batch_size, poll_seconds)
    job = _Job(con, client, chain, batch_size, progress)
    job.check_chain()
    return job.run(start, stop, follow, poll_seconds, sleep, client.stats)


class _Job(Follower[EvmRpcSummary]):
    max_restarts = MAX_RESTARTS

    def __init__(self, con: duckdb.DuckDBPyConnection, client: JsonRpcClient, chain: str, batch_size: int,
                 progress: ProgressFn) -> None:  # fmt: skip
        super().__init__(con, chain, client.endpoint.display, EvmRpcSummary(chain), batch_size, progress)
        self.client = client
        self.source = f"rpc:{client.endpoint.host}"
        self.block_receipts: bool | None = None  # eth_getBlockReceipts works (None: not tried yet)
        self.asked: set[bytes] = set()  # token contracts asked for metadata in this run

    def restarts_exhausted(self, lo: int, hi: int, why: str) -> FundtrailError:
        return CorruptData(
            f"the node at {self.where} keeps answering blocks {lo}..{hi} that do not chain "
            f"onto each other or the stored ones ({MAX_RESTARTS} tries)",
            "check the node (still syncing? several nodes behind one URL?)",
        )

    def remove_above(self, fork: int) -> int:
        return rollback_account_above(self.con, self.chain, fork)

    # -- node ------------------------------------------------------------------------------------------

    def check_chain(self) -> None:
        """The node's chain id must be --chain's: refuses to mix BSC blocks into Ethereum."""
        cid = self._quantity(self.client.call("eth_chainId"), "eth_chainId")
        if cid != CHAIN_IDS[self.chain]:
            known = ", ".join(f"{c} {i}" for c, i in CHAIN_IDS.items())
            other = next((c for c, i in CHAIN_IDS.items() if i == cid), None)
            raise InvalidInput(
                f"the node at {self.where} serves chain id {cid}{f' ({other})' if other else ''}, not "
                f"{self.chain} ({CHAIN_IDS[self.chain]})",
                f"pass --chain {other}" if other else f"check --url; fundtrail knows chain ids {known}",
            )

    def _quantity(self, value: Any, what: str) -> int:
        if not isinstance(value, str) or not rd.QUANTITY.fullmatch(value):
            raise CorruptData(
                f"the node at {self.where} answered {what} with {str(value)[:80]!r}", "check --url"
            )
        return int(value, 16)

    def ask_tip(self) -> int:
        return self._quantity(self.client.call("eth_blockNumber"), "eth_blockNumber")

    def _blocks(
        self, heights: Sequence[int], full: bool, extra: Sequence[int] = ()
    ) -> list[rd.RpcBlock | None]:
        """Blocks (headers with ``full`` False) at ``extra`` + ``heights``; None past the node's tip."""
        wanted = [*((h, False) for h in extra), *((h, full) for h in heights)]
        out: list[rd.RpcBlock | None] = []
        for i in range(0, len(wanted), BLOCKS_PER_REQUEST):
            part = wanted[i : i + BLOCKS_PER_REQUEST]
            answers = self.client.batch([("eth_getBlockByNumber", [hex(h), f]) for h, f in part])
            out += [None if a is None else rd.parse_block(a, h, f) for a, (h, f) in zip(answers, part)]
        return out

    def ask_hashes(self, heights: Sequence[int]) -> list[bytes | None]:
        return [None if b is None else b.hash for b in self._blocks(heights, False)]

    # -- batches ---------------------------------------------------------------------------------------

    def store_batch(self, lo: int, hi: int, node_tip: int) -> None:
        """Store heights lo..hi; raises ChainChanged when the node's chain changed under the batch (the
        stored tip left it, blocks do not chain, or it got shorter): the run loop then reconciles."""
        heights = list(range(lo, hi + 1))
        tip = self.stored_tip()
        stored = self.stored(lo - 1, hi)
        if tip is not None and tip <= node_tip and tip not in stored:
            stored.update(self.stored(tip, tip))
        check = [tip] if tip is not None and tip <= node_tip else []
        known = [h for h in heights if h in stored]  # stored already: fetch headers to compare hashes
        headers = self._blocks(known, False, check)
        if check and (headers[0] is None or headers[0].hash not in stored[check[0]]):
            raise ChainChanged("the stored tip left the node's chain")
        node_hash = {h: b.hash if b else None for h, b in zip(known, headers[len(check) :])}
        missing = [h for h in heights if node_hash.get(h) not in stored.get(h, set())]
        if not missing:
            self.summary.skipped += len(heights)
            return
        fetched = self._blocks(missing, True)
        if any(b is None for b in fetched):
            raise ChainChanged("the node's chain got shorter")
        blocks = [b for b in fetched if b is not None]
        by_height = {b.number: b.hash for b in blocks}
        for b in blocks:
            below = by_height.get(b.number - 1)
            parents = {below} if below is not None else stored.get(b.number - 1)
            moved = node_hash.get(b.number, b.hash) != b.hash  # not the block its header said
            if moved or (parents is not None and b.parent_hash not in parents):
                raise ChainChanged("blocks of two chains: the node reorganized while we asked")
        self.summary.fetched += len(blocks)
        receipts = self._receipts(blocks)
        if receipts is None:
            raise ChainChanged("a receipt of another block")
        internal = self._traces(blocks)
        rows = rd.batch_rows(blocks, receipts, internal, BEACON)
        batch = AccountBatch(self.chain, pa.table(rows.blocks, BLOCK_SCHEMA), pa.table(rows.txs, TX_SCHEMA),
                             pa.table(rows.transfers, TRANSFER_SCHEMA), self.source)  # fmt: skip
        metadata = self._token_metadata(rows.contracts)
        written = write_account_batch(self.con, batch)
        if metadata:
            with transaction(self.con):
                self.summary.tokens_described += set_contract_metadata(self.con, self.chain, metadata)
        s = self.summary
        s.skipped += len(heights) - len(missing)
        s.token_transfers += rows.tokens
        s.internal_transfers += rows.internal
        s.withdrawals += rows.withdrawals
        s.transfer_logs_skipped += rows.logs_skipped
        s.blocks += written.blocks
        s.skipped += written.skipped
        s.txs += written.txs
        s.transfers += written.transfers
        s.new_addresses += written.new_addresses
        s.new_assets += written.new_assets

    def _receipts(self, blocks: Sequence[rd.RpcBlock]) -> list[list[rd.RpcReceipt]] | None:
        """Each block's receipts in transaction order; None when a receipt is of another block (reorg)."""
        todo = [b for b in blocks if b.txs]
        out: dict[int, list[rd.RpcReceipt]] = {b.number: [] for b in blocks}
        if todo and self.block_receipts is not False:
            try:
                answers: list[Any] = []
                for i in range(0, len(todo), BLOCKS_PER_REQUEST):
                    calls = [
                        ("eth_getBlockReceipts", [hex(b.number)]) for b in todo[i : i + BLOCKS_PER_REQUEST]
                    ]
                    answers += self.client.batch(calls)
                self.block_receipts, self.summary.receipts = True, "eth_getBlockReceipts"
            except RpcError:
                if self.block_receipts:
                    raise
                self.block_receipts, self.summary.receipts = False, "eth_getTransactionReceipt"
            else:
                for b, a in zip(todo, answers):
                    if not isinstance(a, list) or not a or self._receipt_block(a[0], b) != b.hash:
                        return None
                    if len(a) != len(b.txs):
                        raise CorruptData(f"block {b.number}: {len(a)} receipts for {len(b.txs)} txs", rd.FIX)
                    out[b.number] = [rd.parse_receipt(r, b.number, t.hash) for r, t in zip(a, b.txs)]
                return [out[b.number] for b in blocks]
        pairs = [(b, t) for b in todo for t in b.txs]
        for i in range(0, len(pairs), RECEIPTS_PER_REQUEST):
            part = pairs[i : i + RECEIPTS_PER_REQUEST]
            answers = self.client.batch(
                [("eth_getTransactionReceipt", ["0x" + t.hash.hex()]) for _, t in part]
            )
            for (b, t), a in zip(part, answers):
                if a is None or self._receipt_block(a, b) != b.hash:
                    return None  # the transaction left the node's chain
                out[b.number].append(rd.parse_receipt(a, b.number, t.hash))
        return [out[b.number] for b in blocks]

    @staticmethod
    def _receipt_block(answer: Any, b: rd.RpcBlock) -> bytes:
        return rd.fixed(
            answer.get("blockHash") if isinstance(answer, dict) else None, 32, b.number, "receipt.blockHash"
        )

    def _traces(self, blocks: Sequence[rd.RpcBlock]) -> list[rd.InternalTransfer]:
        todo = [b for b in blocks if b.txs]
        if not todo or self.summary.traces == "unavailable":
            return []
        if self.summary.traces == "not checked":  # once per run: which tracer does the node offer?
            for method in (*TRACE_METHODS, "unavailable"):
                self.summary.traces = method
                if method == "unavailable":
                    return []
                try:
                    self.client.call(method, self._trace_params(method, todo[0]))
                    break
                except RpcError:
                    continue
        method = self.summary.traces
        out: list[rd.InternalTransfer] = []
        for i in range(0, len(todo), BLOCKS_PER_REQUEST):
            part = todo[i : i + BLOCKS_PER_REQUEST]
            answers = self.client.batch([(method, self._trace_params(method, b)) for b in part])
            for b, a in zip(part, answers):
                if method == "trace_block":
                    out += rd.parity_internal(a, b.number, b.hash)
                else:
                    found, unreadable = rd.geth_internal(a, b.number, b.tx_hashes)
                    out += found
                    self.summary.traces_unreadable += unreadable
        return out

    @staticmethod
    def _trace_params(method: str, b: rd.RpcBlock) -> list[Any]:
        return [hex(b.number)] if method == "trace_block" else [hex(b.number), CALL_TRACER]

    def _token_metadata(self, contracts: set[bytes]) -> list[ContractMetadata]:
        """decimals(), symbol() and name() of token contracts neither the registry nor the store describe."""
        wanted = {c for c in contracts if token(self.chain, c) is None and c not in self.asked}
        if wanted:
            wanted -= contracts_with_metadata(self.con, self.chain, wanted)
        if not wanted:
            return []
        self.asked |= wanted
        self.summary.tokens_asked += len(wanted)
        return fetch_token_metadata(self.client, wanted)
