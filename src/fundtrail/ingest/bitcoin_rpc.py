"""Job: ingest Bitcoin blocks from a Bitcoin Core node over JSON-RPC.

Per batch of heights: ``getblockhash`` for each (one batched request, together with the hash at the
stored tip, which detects reorgs), then ``getblock <hash> 0`` for the blocks not stored yet (raw hex, in
batched requests of ``GETBLOCK_CALLS_PER_REQUEST``), decoded by the same decoder as block files and
written in one transaction: a batch is stored whole or not at all.

- Resume: without ``start``, the job starts after the highest stored height whose hash the node agrees
  with. A run stopped by an error or Ctrl-C loses only its uncommitted batch; a re-run resumes.
- Reorgs: before each batch the stored tip's hash is compared with the node's hash at that height. If
  they differ, the job walks back to the fork point (the highest height where they agree), removes
  every stored block above it (one transaction) and ingests again from the fork point + 1.
- Follow: after reaching the node's tip, poll every ``poll_seconds`` for new blocks until interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import NETWORKS, Network
from fundtrail.errors import BlockRejected, CorruptData, InvalidInput, SourceUnavailable
from fundtrail.ingest.bitcoin_files import IngestSummary
from fundtrail.ingest.jsonrpc import JsonRpcClient, RpcError, parse_url
from fundtrail.ingest.progress import Progress, ProgressFn, no_progress
from fundtrail.store.bitcoin_write import rollback_above, write_blocks
from fundtrail.store.db import scalar, transaction

DEFAULT_BATCH_BLOCKS = 50  # blocks per batch (one transaction); recent mainnet blocks are 1-4 MB each
GETBLOCK_CALLS_PER_REQUEST = 10  # raw blocks per HTTP request: bounds the size of one JSON answer
DEFAULT_POLL_S = 10.0  # --follow: seconds between looks at the node's tip
WALKBACK_WINDOW = 16  # heights compared per request while looking for a fork point (doubles each time)
RPC_PORTS = {"mainnet": 8332, "testnet": 18332, "signet": 38332, "regtest": 18443}
UNREACHABLE_FIX = "check --url and that bitcoind runs with -server"
HEIGHT_OUT_OF_RANGE = -8  # Bitcoin Core RPC_INVALID_PARAMETER, as getblockhash answers past the tip


@dataclass
class RpcIngestSummary(IngestSummary):
    start_height: int | None = None  # first height this run looked at
    stored_tip: int | None = None  # highest height stored (and agreed with the node) at the end
    node_tip: int | None = None
    fetched: int = 0  # blocks downloaded (getblock calls)
    rolled_back: int = 0  # blocks removed by reorgs
    reorgs: int = 0
    requests: int = 0  # HTTP requests answered
    retries: int = 0  # requests repeated after a transient failure


def connect_node(url: str, network: Network, cookie_file: Path | None = None) -> JsonRpcClient:
    """A client for the node at ``url`` (default port: the network's RPC port)."""
    return JsonRpcClient(
        parse_url(url, RPC_PORTS[network.name], cookie_file), unreachable_fix=UNREACHABLE_FIX
    )


def ingest_rpc(
    con: duckdb.DuckDBPyConnection,
    client: JsonRpcClient,
    network: Network,
    start: int | None = None,
    stop: int | None = None,
    follow: bool = False,
    batch_size: int = DEFAULT_BATCH_BLOCKS,
    progress: ProgressFn = no_progress,
    poll_seconds: float = DEFAULT_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> RpcIngestSummary:
    """Ingest the node's blocks from ``start`` (default: resume) to ``stop`` (default: its tip)."""
    if start is not None and start < 0:
        raise InvalidInput(f"--from {start} is negative", "give a height of 0 or more")
    if stop is not None and (stop < 0 or (start is not None and stop < start)):
        raise InvalidInput(f"--to {stop} is below --from {start or 0}", "give --to >= --from")
    if batch_size < 1:
        raise InvalidInput(f"--batch-size {batch_size} is below 1", "give a number of blocks, e.g. 50")
    if poll_seconds <= 0:
        raise InvalidInput(f"--poll-seconds {poll_seconds} is not positive", "give seconds, e.g. 10")
    job = _Job(con, client, network, batch_size, progress)
    job.check_network()
    try:
        job.run(start, stop, follow, poll_seconds, sleep)
    finally:
        job.summary.requests = client.stats.requests
        job.summary.retries = client.stats.retries
    return job.summary


class _Job:
    def __init__(self, con: duckdb.DuckDBPyConnection, client: JsonRpcClient, network: Network,
                 batch_size: int, progress: ProgressFn) -> None:  # fmt: skip
        self.con = con
        self.client = client
        self.net = network
        self.chain = network.chain
        self.batch_size = batch_size
        self.progress = progress
        self.summary = RpcIngestSummary()
        self.source = f"rpc:{client.endpoint.host}"
        self.where = client.endpoint.display
        self._rolled = False  # a reorg was rolled back since the run loop last looked

    def run(self, start: int | None, stop: int | None, follow: bool, poll_seconds: float,
            sleep: Callable[[float], None]) -> None:  # fmt: skip
        nxt = start
        while True:
            node_tip = self._node_tip()
            agreed = self._reconcile(node_tip)
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
                done = self._batch(nxt, end, node_tip)
                if done is None:  # the node's chain changed under us: reconcile, then go on
                    break
                nxt = done + 1
                self._report(nxt - 1, target)
            else:
                self.summary.stored_tip = self._stored_tip()
                if not follow or (stop is not None and nxt > stop):
                    return
                self._report(nxt - 1, target, "waiting for new blocks")
                sleep(poll_seconds)

    # -- node ------------------------------------------------------------------------------------------

    def check_network(self) -> None:
        """The node's genesis must be the network's: refuses to mix testnet blocks into mainnet."""
        genesis = self._hash_of(self.client.call("getblockhash", [0]), "getblockhash 0").hex()
        if genesis != self.net.genesis_hash:
            other = next((n.name for n in NETWORKS.values() if n.genesis_hash == genesis), None)
            raise InvalidInput(
                f"the node at {self.where} is on {other or 'another network'} (genesis {genesis}), "
                f"not {self.net.name}",
                f"pass --network {other}" if other else "check --url and --network",
            )

    def _node_tip(self) -> int:
        tip = self.client.call("getblockcount")
        if not isinstance(tip, int) or isinstance(tip, bool) or tip < 0:
            raise CorruptData(f"the node at {self.where} answered getblockcount with {tip!r}", "check --url")
        self.summary.node_tip = tip
        return tip

    def _hash_of(self, value: object, what: str) -> bytes:
        if isinstance(value, str) and len(value) == 64:
            try:
                return bytes.fromhex(value)
            except ValueError:
                pass
        raise CorruptData(f"the node at {self.where} answered {what} with {str(value)[:80]!r}", "check --url")

    def _node_hashes(self, heights: Sequence[int]) -> list[bytes]:
        answers = self.client.batch([("getblockhash", [h]) for h in heights])
        return [self._hash_of(a, f"getblockhash {h}") for a, h in zip(answers, heights)]

    def _raw_blocks(self, hashes: Sequence[bytes], heights: Sequence[int]) -> list[bytes]:
        raws: list[bytes] = []
        step = GETBLOCK_CALLS_PER_REQUEST
        for i in range(0, len(hashes), step):
            calls = [("getblock", [h.hex(), 0]) for h in hashes[i : i + step]]
            try:
                answers = self.client.batch(calls)
            except RpcError as exc:
                if "prune" in exc.message.lower():
                    raise SourceUnavailable(
                        f"the node at {self.where} has pruned the blocks from height {heights[i]}",
                        "use an unpruned node, or start above its prune height with --from",
                    ) from None
                raise
            for a, h in zip(answers, heights[i : i + step]):
                if not isinstance(a, str) or len(a) % 2 or len(a) < 162:
                    raise CorruptData(
                        f"the node at {self.where} answered getblock (height {h}) with no raw block hex",
                        "check --url points at a Bitcoin Core node",
                    )
                try:
                    raws.append(bytes.fromhex(a))
                except ValueError:
                    raise CorruptData(
                        f"the node at {self.where} answered getblock (height {h}) with non-hex text",
                        "check --url points at a Bitcoin Core node",
                    ) from None
        self.summary.fetched += len(raws)
        return raws

    # -- store -----------------------------------------------------------------------------------------

    def _stored_tip(self) -> int | None:
        tip = scalar(self.con, "SELECT max(height) FROM blocks WHERE chain = ?", [self.chain])
        return None if tip is None else int(tip)

    def _stored(self, lo: int, hi: int) -> dict[int, set[bytes]]:
        rows = self.con.execute(
            "SELECT height, hash FROM blocks WHERE chain = ? AND height BETWEEN ? AND ?", [self.chain, lo, hi]
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
        if stored is not None and self._node_hashes([check])[0] in stored:
            return check if tip <= node_tip else node_tip  # a node behind the store: nothing to undo
        fork = self._fork_point(check)
        self._rollback(fork)
        return fork

    def _fork_point(self, below: int) -> int:
        """The highest stored height <= ``below`` where the stored hash is the node's (-1: none)."""
        window = WALKBACK_WINDOW
        hi = below
        while hi >= 0:
            rows = self.con.execute(
                """SELECT height, hash FROM blocks WHERE chain = ? AND height <= ?
                   AND height IN (SELECT DISTINCT height FROM blocks WHERE chain = ? AND height <= ?
                                  ORDER BY height DESC LIMIT ?)""",
                [self.chain, hi, self.chain, hi, window],
            ).fetchall()
            if not rows:
                return -1
            stored: dict[int, set[bytes]] = {}
            for height, h in rows:
                stored.setdefault(int(height), set()).add(bytes(h))
            heights = sorted(stored, reverse=True)
            for height, node_hash in zip(heights, self._node_hashes(heights)):
                if node_hash in stored[height]:
                    return height
            hi = heights[-1] - 1
            window *= 2
        return -1

    def _rollback(self, fork: int) -> None:
        with transaction(self.con):
            n = rollback_above(self.con, self.chain, fork)
        self.summary.rolled_back += n
        self.summary.reorgs += 1
        self._rolled = True
        self._report(fork, self.summary.node_tip, f"reorg: rolled back {n} blocks above height {fork}")

    # -- batches ---------------------------------------------------------------------------------------

    def _batch(self, lo: int, hi: int, node_tip: int) -> int | None:
        """Store heights lo..hi; returns hi, or None when the stored tip left the node's chain or the
        node's chain got shorter (the run loop then looks at the node again and reconciles)."""
        heights = list(range(lo, hi + 1))
        tip = self._stored_tip()
        check = [tip] if tip is not None and tip <= node_tip else []
        try:
            hashes = self._node_hashes(check + heights)
        except RpcError as exc:
            if exc.code != HEIGHT_OUT_OF_RANGE:
                raise
            if self._node_tip() >= hi:
                raise CorruptData(
                    f"the node at {self.where} reports tip {self.summary.node_tip} but has no block at a "
                    f"height in {lo}..{hi}", "check the node (is it still importing blocks?)",
                ) from None  # fmt: skip
            return None  # its chain got shorter (a reorg): look again
        if check and hashes[0] not in self._stored(check[0], check[0]).get(check[0], set()):
            return None  # the stored tip left the node's chain: a reorg
        hashes = hashes[len(check) :]
        stored = self._stored(lo, hi)
        missing = [k for k, h in enumerate(hashes) if h not in stored.get(heights[k], set())]
        self.summary.skipped += len(heights) - len(missing)
        if not missing:
            return hi
        want_heights = [heights[k] for k in missing]
        raws = self._raw_blocks([hashes[k] for k in missing], want_heights)
        lens = np.array([len(r) for r in raws], np.int64)
        ends = np.cumsum(lens)
        buf = np.frombuffer(b"".join(raws), np.uint8)
        try:
            decoded = decode_blocks(buf, ends - lens, ends, self.net, [*want_heights], "rpc")
        except BlockRejected as exc:
            at = want_heights[exc.index] if exc.index is not None else None
            exc.problem = f"the node at {self.where}: height {at}: {exc.problem}"
            exc.fix = (exc.fix + "; " if exc.fix else "") + (
                f"nothing of heights {lo}..{hi} was stored"
                + (f"; {self.summary.blocks} blocks of earlier batches are, a re-run resumes after them"
                   if self.summary.blocks else "")
            )  # fmt: skip
            exc.args = (exc.line(),)
            raise
        for k, b in enumerate(decoded.blocks):
            if b.header.hash != hashes[missing[k]]:
                raise CorruptData(
                    f"the node at {self.where} answered getblock {hashes[missing[k]].hex()} with block "
                    f"{b.header.hash.hex()}",
                    f"nothing of heights {lo}..{hi} was stored; check the node",
                )
        self.summary.add(write_blocks(self.con, decoded, self.source))
        return hi

    def _report(self, height: int, target: int | None, note: str = "") -> None:
        s = self.summary
        self.progress(Progress(max(height, 0), target, s.blocks + s.skipped, s.txs, note))
