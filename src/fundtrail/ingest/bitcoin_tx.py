"""Job: ingest single raw Bitcoin transactions, outside any block ("loose" transactions).

Investigators receive transactions from exchanges and seized devices as raw hex, or as the binary a
wallet saved. Each source is a hex string, or a file holding hex (one transaction per line; blank lines and
whitespace inside a line are ignored) or one raw binary transaction (a file containing a NUL byte is
binary: every serialized transaction has one, in its version field). Everything given is parsed and
decoded (by the decoder that decodes block transactions) before anything is written, then written in one
transaction: a malformed source stores nothing. Transactions stored already are reported, not stored again.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import duckdb

from fundtrail.chains.bitcoin import kernels
from fundtrail.chains.bitcoin.decoder import TransactionRejected, decode_transactions
from fundtrail.chains.bitcoin.network import Network
from fundtrail.errors import InvalidInput
from fundtrail.store.bitcoin_loose import LooseWriteResult, coinbase_rows, write_loose_txs

MIN_TX_BYTES = 60  # version, one input with an empty script, one output with an empty script, locktime
_HEX = frozenset(string.hexdigits)
_ONE_PER_LINE = "give each transaction's complete hex on one line"


@dataclass(frozen=True)
class RawTx:
    origin: str  # where it came from, for messages: "argument 1", "tx.hex line 3", "tx.bin"
    raw: bytes


def read_raw_transactions(sources: list[str]) -> list[RawTx]:
    """Every raw transaction in ``sources`` (hex strings or file paths), strictly parsed."""
    if not sources:
        raise InvalidInput(
            "no transaction given", "give a file holding raw transactions, or a transaction's hex"
        )
    txs: list[RawTx] = []
    for i, src in enumerate(sources, 1):
        path = Path(src)
        if _is_file(path):
            txs += _read_file(path)
        else:
            txs.append(_from_argument(src, f"argument {i}" if len(sources) > 1 else "the argument"))
    return txs


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name too long for the file system: a hex string
        return False


def _from_argument(text: str, origin: str) -> RawTx:
    digits = "".join(text.split())
    if not digits or not set(digits) <= _HEX:
        raise InvalidInput(
            f"{text[:40]!r} is neither a file nor hexadecimal",
            "give the path of a file holding raw transactions, or a transaction's hex",
        )
    if len(digits) < 2 * MIN_TX_BYTES:
        raise InvalidInput(
            f"{origin} is no file, and as hex it is too short for a transaction ({len(digits)} hex digits, "
            f"at least {2 * MIN_TX_BYTES})",
            "give the transaction's complete hex, or the path of an existing file",
        )
    return RawTx(origin, _hex(digits, origin))


def _hex(digits: str, origin: str) -> bytes:
    if len(digits) % 2:
        raise InvalidInput(
            f"{origin}: odd number of hex digits ({len(digits)}): a digit is missing or extra", _ONE_PER_LINE
        )
    return bytes.fromhex(digits)


def _read_file(path: Path) -> list[RawTx]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", "check the path") from None
    if not data.strip():
        raise InvalidInput(f"{path} is empty", "give a file holding raw transactions (hex or binary)")
    if b"\0" in data:  # binary: exactly one serialized transaction
        return [RawTx(str(path), data)]
    txs: list[RawTx] = []
    for no, line in enumerate(data.split(b"\n"), 1):
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidInput(
                f"{path} line {no}: not hexadecimal text (a non-ASCII byte)",
                "give hex text, one transaction per line, or a raw binary transaction",
            ) from None
        digits = "".join(text.split())
        if not digits:
            continue
        bad = next((c for c in digits if c not in _HEX), None)
        if bad is not None:
            raise InvalidInput(
                f"{path} line {no}: {bad!r} is not a hex digit (column {text.index(bad) + 1})", _ONE_PER_LINE
            )
        origin = f"{path} line {no}"
        txs.append(RawTx(origin, _hex(digits, origin)))
    return txs


_FIXES = {
    kernels.E_TRUNCATED: "the transaction is incomplete: copy it again whole, one transaction per line",
    kernels.E_TRAILING: "bytes follow the end of the transaction: give one transaction per line "
    "(a binary file holds exactly one)",
}


def ingest_raw_transactions(
    con: duckdb.DuckDBPyConnection, sources: list[str], network: Network
) -> LooseWriteResult:
    """Parse, decode and store the raw transactions in ``sources`` (see the module's docstring)."""
    txs = read_raw_transactions(sources)
    try:
        d = decode_transactions([t.raw for t in txs], network)
    except TransactionRejected as exc:
        fix = _FIXES.get(exc.code, "check the data: it is not a serialized Bitcoin transaction")
        raise InvalidInput(
            f"{txs[exc.index].origin}: transaction does not decode: {exc.detail}", fix
        ) from None
    if coinbases := coinbase_rows(d):
        k = coinbases[0]
        raise InvalidInput(
            f"{txs[k].origin}: transaction {d.txid_hex(k)} is a coinbase, which exists only in its block",
            "ingest the block instead (fundtrail ingest bitcoin-blocks|bitcoin-rpc)",
        )
    return write_loose_txs(con, d)
