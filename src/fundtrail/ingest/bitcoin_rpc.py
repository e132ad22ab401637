"""Job: ingest Bitcoin blocks from a Bitcoin Core node over JSON-RPC.

Per batch of heights: ``getblockhash`` for each (one batched request, together with the hash at the
stored tip, which detects reorgs), then ``getblock <hash> 0`` for the blocks not stored yet (raw hex, in
batched requests of ``GETBLOCK_CALLS_PER_REQUEST``), decoded by the same decoder as block files and
written in one transaction: a batch is stored whole or not at all.

Resume, reorgs and --follow are :mod:`fundtrail.ingest.follow`'s:

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
from fundtrail.ingest.follow import ChainChanged, Follower, FollowSummary, check_options
from fundtrail.ingest.jsonrpc import JsonRpcClient, RpcError, parse_url
from fundtrail.ingest.progress import ProgressFn, no_progress
from fundtrail.store.bitcoin_write import rollback_above, write_blocks

DEFAULT_BATCH_BLOCKS = 50  # blocks per batch (one transaction); recent mainnet blocks are 1-4 MB each
GETBLOCK_CALLS_PER_REQUEST = 10  # raw blocks per HTTP request: bounds the size of one JSON answer
DEFAULT_POLL_S = 10.0  # --follow: seconds between looks at the node's tip
RPC_PORTS = {"mainnet": 8332, "testnet": 18332, "signet": 38332, "regtest": 18443}
UNREACHABLE_FIX = "check --url and that bitcoind runs with -server"
HEIGHT_OUT_OF_RANGE = -8  # Bitcoin Core RPC_INVALID_PARAMETER, as getblockhash answers past the tip


@dataclass
class RpcIngestSummary(FollowSummary, IngestSummary):
    pass


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
    check_options(start, stop, batch_size, poll_seconds, DEFAULT_BATCH_BLOCKS, DEFAULT_POLL_S)
    job = _Job(con, client, network, batch_size, progress)
    job.check_network()
    return job.run(start, stop, follow, poll_seconds, sleep, client.stats)


class _Job(Follower[RpcIngestSummary]):
    def __init__(self, con: duckdb.DuckDBPyConnection, client: JsonRpcClient, network: Network,
                 batch_size: int, progress: ProgressFn) -> None:  # fmt: skip
        where = client.endpoint.display
        super().__init__(con, network.chain, where, RpcIngestSummary(), batch_size, progress)
        self.client = client
        self.net = network
        self.source = f"rpc:{client.endpoint.host}"

    def remove_above(self, fork: int) -> int:
        return rollback_above(self.con, self.chain, fork)

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

    def ask_tip(self) -> int:
        tip = self.client.call("getblockcount")
        if not isinstance(tip, int) or isinstance(tip, bool) or tip < 0:
            raise CorruptData(f"the node at {self.where} answered getblockcount with {tip!r}", "check --url")
        return tip

    def _hash_of(self, value: object, what: str) -> bytes:
        if isinstance(value, str) and len(value) == 64:
            try:
                return bytes.fromhex(value)
            except ValueError:
                pass
        raise CorruptData(f"the node at {self.where} answered {what} with {str(value)[:80]!r}", "check --url")

    def ask_hashes(self, heights: Sequence[int]) -> list[bytes]:
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

    # -- batches ---------------------------------------------------------------------------------------

    def store_batch(self, lo: int, hi: int, node_tip: int) -> None:
        """Store heights lo..hi; raises ChainChanged when the stored tip left the node's chain or the
        node's chain got shorter (the run loop then looks at the node again and reconciles)."""
        heights = list(range(lo, hi + 1))
        tip = self.stored_tip()
        check = [tip] if tip is not None and tip <= node_tip else []
        try:
            hashes = self.ask_hashes(check + heights)
        except RpcError as exc:
            if exc.code != HEIGHT_OUT_OF_RANGE:
                raise
            if self.node_tip() >= hi:
                raise CorruptData(
                    f"the node at {self.where} reports tip {self.summary.node_tip} but has no block at a "
                    f"height in {lo}..{hi}", "check the node (is it still importing blocks?)",
                ) from None  # fmt: skip
            raise ChainChanged("the node's chain got shorter") from None
        if check and hashes[0] not in self.stored(check[0], check[0]).get(check[0], set()):
            raise ChainChanged("the stored tip left the node's chain")
        hashes = hashes[len(check) :]
        stored = self.stored(lo, hi)
        missing = [k for k, h in enumerate(hashes) if h not in stored.get(heights[k], set())]
        self.summary.skipped += len(heights) - len(missing)
        if not missing:
            return
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
            exc.fix = (exc.fix + "; " if exc.fix else "") + self.batch_not_stored(lo, hi)
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
