"""The simulator's account-chain encoder: ethereum-etl CSV exports of the EVM chain ``sim-ethereum``.

:class:`EtlWriter` streams three files in ethereum-etl's own CSV layout (column names, order and value
formats of ``export_blocks_and_transactions`` with the receipt columns of its streaming export, and
``export_token_transfers``), which ``fundtrail ingest ethereum-etl --chain sim-ethereum`` reads:

- ``blocks.csv``: one row per sealed block; EIP-4895 ``withdrawals`` as ethereum-etl writes them (JSON
  objects joined by commas in one quoted cell, amounts in gwei). Fields a simulation has no honest value for
  (logs bloom, state/transactions/receipts roots, size, miner) are left empty, as ethereum-etl leaves the
  fields a node does not report.
- ``transactions.csv``: legacy (type 0) transactions with their receipt: ``receipt_gas_used``,
  ``receipt_status`` (always 1), ``receipt_effective_gas_price`` (the gas price), so the fee is exactly
  ``gas_used x gas_price``.
- ``token_transfers.csv``: the ERC-20 ``Transfer`` of each token transaction (a mint comes from 0x0).

Hashes are Keccak-256 of canonical encodings (not of RLP: nothing here is signed): a transaction's of
``chain_id (8 bytes) | sender | nonce (8 bytes) | to | length of value (1 byte) | value (its minimal
big-endian bytes) | input`` (a token transfer's fits Keccak's one 136-byte block: one permutation), a
block's of ``parent hash | number (8 bytes) | timestamp (8 bytes) | its transaction hashes``. The
transactions of the open block are kept until :meth:`EtlWriter.seal_block` knows its hash and time, then
written; memory is bounded by one block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from eth_hash.auto import keccak as _eth_keccak

from fundtrail.errors import InvalidInput

NATIVE_GAS = 21_000  # gas limit and gas used of a plain ETH transfer
TOKEN_GAS = 51_000  # gas used by an ERC-20 transfer or issue (a typical USDT transfer: 41k-63k)
TOKEN_GAS_LIMIT = 65_000  # the gas limit a wallet sets for one
SWAP_GAS = 120_000  # gas used (and limit) of a contract call such as a DEX swap, unless given
MAX_GAS_PRICE = 2**64 - 1  # wei per gas; keeps every fee within the store's exact HUGEINT product
TRANSFER_SELECTOR = bytes.fromhex("a9059cbb")  # transfer(address,uint256)
ISSUE_SELECTOR = bytes.fromhex("867904b4")  # issue(address,uint256): the issuer mints to an address
SWAP_SELECTOR = bytes.fromhex("7ff36ab5")  # swapExactETHForTokens(uint256,address[],address,uint256)
ZERO_ADDRESS = b"\x00" * 20
GENESIS_HASH = _eth_keccak(b"fundtrail simulation: sim-ethereum genesis")  # parent of block 1
EMPTY_UNCLES_HASH = "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347"  # keccak(rlp([]))
GAS_LIMIT = 30_000_000  # a block's gas limit (raised to its gas used for a block fuller than that)

BLOCK_COLUMNS = (
    "number,hash,parent_hash,nonce,sha3_uncles,logs_bloom,transactions_root,state_root,receipts_root,miner,"
    "difficulty,total_difficulty,size,extra_data,gas_limit,gas_used,timestamp,transaction_count,"
    "base_fee_per_gas,withdrawals_root,withdrawals"
)
TRANSACTION_COLUMNS = (
    "hash,nonce,block_hash,block_number,transaction_index,from_address,to_address,value,gas,gas_price,input,"
    "block_timestamp,max_fee_per_gas,max_priority_fee_per_gas,transaction_type,receipt_cumulative_gas_used,"
    "receipt_gas_used,receipt_contract_address,receipt_root,receipt_status,receipt_effective_gas_price"
)
TOKEN_TRANSFER_COLUMNS = "token_address,from_address,to_address,value,transaction_hash,log_index,block_number"

# placeholders for what a transaction row cannot know before its block is sealed
_BLOCK_HASH = "\x01"
_BLOCK_TIME = "\x02"
_U256 = 2**256
_PAD12 = b"\x00" * 12  # an address in a 32-byte ABI word
_BYTE = [bytes([n]) for n in range(33)]


def fast_keccak256() -> Callable[[bytes], bytes]:
    """Keccak-256. eth-hash computes it through pycryptodome's C code, but at about 5 µs a call (a new
    state each time, and its Python wrappers); calling that same C code with one reused state through cffi
    costs about 1.3 µs. Used when pycryptodome runs on its cffi backend and agrees with eth-hash on test
    vectors; eth-hash otherwise."""
    try:
        from Crypto.Hash import keccak as module
        from Crypto.Util import _raw_api as raw
    except ImportError:  # pragma: no cover - pycryptodome is eth-hash's backend here
        return _eth_keccak
    lib: Any = getattr(module, "_raw_keccak_lib", None)
    if lib is None or raw.backend != "cffi":
        return _eth_keccak
    state = raw.VoidPointer()
    if lib.keccak_init(state.address_of(), 64, 24):  # capacity 2 x 32 bytes, 24 rounds: Keccak-256
        return _eth_keccak
    owner = raw.SmartPointer(state.get(), lib.keccak_destroy)  # frees the state with the function
    ptr = owner.get()
    out = raw.create_string_buffer(32, None)
    view = raw.ffi.buffer(out)
    reset, absorb, digest = lib.keccak_reset, lib.keccak_absorb, lib.keccak_digest

    def keccak256(data: bytes, _owner: Any = owner) -> bytes:
        reset(ptr)
        absorb(ptr, data, len(data))
        digest(ptr, out, 32, 0x01)  # 0x01: Keccak's padding (SHA-3's is 0x06)
        return view[:]  # type: ignore[no-any-return]

    vectors = [b"", b"abc", bytes(range(256)) * 3, b"\xff" * 135, b"\x00" * 136]
    if any(keccak256(v) != _eth_keccak(v) for v in vectors):  # pragma: no cover
        return _eth_keccak
    return keccak256


def _open(path: Path, header: str) -> TextIO:
    try:
        fh = path.open("x", newline="", buffering=1 << 20)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}", "check the directory") from None
    fh.write(header + "\n")
    return fh


def _address(a: bytes, what: str) -> str:
    if len(a) != 20:
        raise ValueError(f"{what} {a.hex()} is {len(a)} bytes, not a 20-byte address")
    return "0x" + a.hex()


class EtlWriter:
    """Streams ethereum-etl CSV exports (``blocks.csv``, ``transactions.csv``, ``token_transfers.csv`` in
    ``out_dir``) of a simulated EVM chain, block by block. Transactions, token transfers and withdrawals
    go to the open block; :meth:`seal_block` closes it. Every transaction succeeds."""

    NATIVE_GAS = NATIVE_GAS
    TOKEN_GAS = TOKEN_GAS
    SWAP_GAS = SWAP_GAS

    def __init__(self, out_dir: Path, chain_id: int = 1_337_000) -> None:
        if not 1 <= chain_id < 2**64:
            raise InvalidInput(f"chain id {chain_id} is outside 1..2^64-1", "give a positive 64-bit chain id")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create {out_dir}: {exc.strerror}", "check the path") from None
        self.blocks_path = out_dir / "blocks.csv"
        self.transactions_path = out_dir / "transactions.csv"
        self.token_transfers_path = out_dir / "token_transfers.csv"
        self.chain_id = chain_id
        for path in (self.blocks_path, self.transactions_path, self.token_transfers_path):
            if path.exists():
                raise InvalidInput(
                    f"{path} exists already",
                    "write the export to an empty directory, or delete the old files",
                )
        self._blocks = _open(self.blocks_path, BLOCK_COLUMNS)
        self._txs = _open(self.transactions_path, TRANSACTION_COLUMNS)
        self._transfers = _open(self.token_transfers_path, TOKEN_TRANSFER_COLUMNS)
        self._keccak = fast_keccak256()
        self._chain = chain_id.to_bytes(8, "big")
        self._nonces: dict[bytes, int] = {}
        self.number = 0  # the last sealed block (0: none yet; the open block is number + 1)
        self.tip_hash = "0x" + GENESIS_HASH.hex()
        self._parent = GENESIS_HASH
        self._time = 0
        self._base_fee = 0
        self._withdrawal_index = 0
        self._closed = False
        self._reset_open_block()

    def _reset_open_block(self) -> None:
        self._hashes: list[bytes] = []
        self._tx_rows: list[str] = []
        self._transfer_rows: list[str] = []
        self._withdrawals: list[str] = []
        self._gas_used = 0
        self._min_price = MAX_GAS_PRICE + 1  # the lowest gas price of the block (none yet: above any)
        self._open_number = str(self.number + 1)

    def native(self, sender: bytes, to: bytes, value: int, gas_price: int) -> str:
        """A plain ETH transfer (gas 21,000, status 1) in the open block; nonce per sender kept here.
        Returns the tx hash (0x-hex). sender/to are 20-byte addresses."""
        return self._tx(sender, to, value, gas_price, b"", "0x", NATIVE_GAS, NATIVE_GAS)

    def token(self, token: bytes, sender: bytes, to: bytes, value: int, gas_price: int) -> str:
        """An ERC-20 `transfer(to, value)`: a tx from sender to the token contract, value 0, input data the
        ABI call (a9059cbb...), gas used 51,000 (TOKEN_GAS), plus one token_transfers row. Returns the
        tx hash."""
        return self._token_tx(TRANSFER_SELECTOR, token, sender, sender, to, value, gas_price)

    def mint(self, token: bytes, issuer: bytes, to: bytes, value: int, gas_price: int) -> str:
        """The issuer's `issue`: a tx from issuer to the contract whose token transfer is from 0x000..0 to
        `to` (input ``issue(address,uint256)``, gas used TOKEN_GAS). Returns the tx hash."""
        return self._token_tx(ISSUE_SELECTOR, token, issuer, ZERO_ADDRESS, to, value, gas_price)

    def call(
        self,
        sender: bytes,
        contract: bytes,
        value: int,
        gas_price: int,
        transfers: Sequence[tuple[bytes, bytes, bytes, int]],
        gas_used: int = SWAP_GAS,
        data: bytes = SWAP_SELECTOR,
    ) -> str:
        """A contract call (a DEX swap, say): ``value`` wei from sender to ``contract``, input ``data``,
        ``gas_used`` gas (also its limit), and the token transfers the call emits, in log order, each
        (token contract, from, to, amount). Returns the tx hash."""
        for token, source, to, amount in transfers:
            _address(token, "token contract")
            _address(source, "token sender")
            _address(to, "token recipient")
            if not 0 <= amount < _U256:
                raise ValueError(f"token amount {amount} is not a uint256")
        if not 0 < gas_used < 2**63:
            raise ValueError(f"gas used {gas_used} is not positive")
        tx_hash = self._tx(sender, contract, value, gas_price, data, "0x" + data.hex(), gas_used, gas_used)
        for token, source, to, amount in transfers:
            self._log(token, source, to, amount, tx_hash)
        return tx_hash

    def withdrawal(self, address: bytes, amount_gwei: int, validator_index: int) -> None:
        """A beacon withdrawal credited in the open block (how ETH enters the world). Withdrawals are
        numbered across the chain (``index``), as on Ethereum."""
        self._check_open()
        shown = _address(address, "withdrawal address")
        if not 0 <= amount_gwei < 2**64 or not 0 <= validator_index < 2**64:
            raise ValueError(
                f"withdrawal amount {amount_gwei} gwei or validator {validator_index} is not uint64"
            )
        self._withdrawals.append(
            f'{{"index":{self._withdrawal_index},"validator_index":{validator_index},'
            f'"address":"{shown}","amount":{amount_gwei}}}'
        )
        self._withdrawal_index += 1

    def seal_block(self, timestamp: int) -> tuple[int, str]:
        """Close the open block (possibly empty) as the next block number (starting at 1; the parent of
        block 1 is a fixed genesis hash) and return (number, hash). Timestamps may not go back."""
        self._check_open()
        if not self._time <= timestamp < 2**64:
            raise ValueError(
                f"block time {timestamp} is before the previous block's ({self._time}) or not uint64"
            )
        number = self.number + 1
        block_hash = self._keccak(
            b"".join((self._parent, number.to_bytes(8, "big"), timestamp.to_bytes(8, "big"), *self._hashes))
        )
        shown = "0x" + block_hash.hex()
        if self._tx_rows:
            rows = "".join(self._tx_rows)
            self._txs.write(rows.replace(_BLOCK_HASH, shown).replace(_BLOCK_TIME, str(timestamp)))
        if self._transfer_rows:
            self._transfers.write("".join(self._transfer_rows))
        if self._hashes:
            self._base_fee = self._min_price  # the floor every transaction of the block paid
        withdrawals = ",".join(self._withdrawals)
        cells = (
            str(number), shown, "0x" + self._parent.hex(), "0x0000000000000000", EMPTY_UNCLES_HASH,
            "", "", "", "", "", "0", "", "", "0x", str(max(GAS_LIMIT, self._gas_used)), str(self._gas_used),
            str(timestamp), str(len(self._hashes)), str(self._base_fee), "",
            '"' + withdrawals.replace('"', '""') + '"' if withdrawals else "",
        )  # fmt: skip
        self._blocks.write(",".join(cells) + "\n")
        self.number, self.tip_hash, self._parent, self._time = number, shown, block_hash, timestamp
        self._reset_open_block()
        return number, shown

    def close(self) -> None:
        """Flush and close the three files (idempotent). Raises ValueError when the open block holds
        transactions or withdrawals that were never sealed (they are not written)."""
        if self._closed:
            return
        self._closed = True
        for fh in (self._blocks, self._txs, self._transfers):
            fh.close()
        if self._hashes or self._withdrawals:
            raise ValueError(
                f"{len(self._hashes)} transactions and {len(self._withdrawals)} withdrawals of the open "
                "block were not written: call seal_block before close"
            )

    def __enter__(self) -> EtlWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:  # do not hide the error in flight behind the unsealed-block one
            self._reset_open_block()
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the ethereum-etl writer is closed")

    def _token_tx(self, selector: bytes, token: bytes, sender: bytes, source: bytes, to: bytes, value: int,
                  gas_price: int) -> str:  # fmt: skip
        if not 0 <= value < _U256:
            raise ValueError(f"token amount {value} is not a uint256")
        _address(to, "recipient")
        data = selector + _PAD12 + to + value.to_bytes(32, "big")
        data_hex = "0x" + data.hex()
        tx_hash = self._tx(sender, token, 0, gas_price, data, data_hex, TOKEN_GAS_LIMIT, TOKEN_GAS)
        self._transfer_rows.append(  # as _log, inlined: this is the hot path of the simulator
            f"0x{token.hex()},0x{source.hex()},0x{data_hex[34:74]},{value},{tx_hash},"
            f"{len(self._transfer_rows)},{self._open_number}\n"
        )
        return tx_hash

    def _log(self, token: bytes, source: bytes, to: bytes, value: int, tx_hash: str) -> None:
        """A token_transfers row; its log index is its position among the block's transfer logs."""
        self._transfer_rows.append(
            f"0x{token.hex()},0x{source.hex()},0x{to.hex()},{value},{tx_hash},{len(self._transfer_rows)},"
            f"{self._open_number}\n"
        )

    def _tx(self, sender: bytes, to: bytes, value: int, gas_price: int, data: bytes, data_hex: str, gas: int,
            gas_used: int) -> str:  # fmt: skip
        if self._closed:
            raise ValueError("the ethereum-etl writer is closed")
        if len(sender) != 20 or len(to) != 20:
            _address(sender, "sender")
            _address(to, "recipient")
        if not 0 <= value < _U256:
            raise ValueError(f"value {value} wei is not a uint256")
        if not 0 <= gas_price <= MAX_GAS_PRICE:
            raise ValueError(f"gas price {gas_price} is outside 0..2^64-1 wei")
        nonces = self._nonces
        nonce = nonces.get(sender, 0)
        nonces[sender] = nonce + 1
        size = (value.bit_length() + 7) >> 3
        h = self._keccak(
            b"".join(
                (self._chain, sender, nonce.to_bytes(8, "big"), to, _BYTE[size], value.to_bytes(size), data)
            )
        )
        tx_hash = "0x" + h.hex()
        hashes = self._hashes
        cumulative = self._gas_used + gas_used
        self._gas_used = cumulative
        if gas_price < self._min_price:
            self._min_price = gas_price
        # \x01 and \x02: the block hash and time, filled in by seal_block (_BLOCK_HASH, _BLOCK_TIME)
        self._tx_rows.append(
            f"{tx_hash},{nonce},\x01,{self._open_number},{len(hashes)},0x{sender.hex()},0x{to.hex()},{value},"
            f"{gas},{gas_price},{data_hex},\x02,,,0,{cumulative},{gas_used},,,1,{gas_price}\n"
        )
        hashes.append(h)
        return tx_hash
