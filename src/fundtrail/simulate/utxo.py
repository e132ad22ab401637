"""The simulated UTXO chain: wallets holding coins, transactions with coin selection and change, blocks.

A coin is ``(value, txid, vout, address number, script kind)``; an address is ``(number, kind, script)``
where the number derives its key (``btc_blocks.address_key``). Coins a transaction creates are spendable
from the next block on (coinbases after 100 blocks, as consensus requires). Every address is created
through :meth:`UtxoChain.new_address`, which writes its truth row (actor, purpose).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fundtrail.labels.codecs import base58check_encode, segwit_address
from fundtrail.simulate.address_text import p2pkh_texts, p2wpkh_texts
from fundtrail.simulate.btc_blocks import P2PKH, P2WPKH, BlockFileWriter, TxEncoder, address_key, script_for
from fundtrail.simulate.truth import TruthWriter

CHAIN = "bitcoin-regtest"
HRP, P2PKH_PREFIX = "bcrt", b"\x6f"
COINBASE_MATURITY = 100
ADDRESS_CHUNK = 100_000  # new addresses buffered before their texts are computed in bulk
DUST = 546  # satoshi: outputs below are not created (the change goes to the fee instead)
# virtual sizes (vbytes) of the parts of a transaction, for fees
_VSIZE_IN = {P2WPKH: 68, P2PKH: 148}
_VSIZE_OUT = {P2WPKH: 31, P2PKH: 34}
_VSIZE_TX = 11

Coin = tuple[int, bytes, int, int, int]  # value, txid (internal order), vout, address number, kind
Address = tuple[int, int, bytes]  # number, kind, scriptPubKey


class Insufficient(Exception):
    """A wallet cannot pay: the caller decides what the actor does instead (not a user error)."""


@dataclass
class Wallet:
    """An actor's wallet on the UTXO chain: its coins (oldest first), their total, its script kind and its
    change behaviour. Coins change only through the chain (``UtxoChain``), which keeps ``balance`` exact."""

    actor: int
    kind: int = P2WPKH
    fresh_change: bool = True  # False: change goes back to the wallet's first address (address reuse)
    coins: list[Coin] = field(default_factory=list)
    home: Address | None = None  # the reused address (receive and, without fresh change, change)
    balance: int = 0

    def credit(self, coin: Coin) -> None:
        self.coins.append(coin)
        self.balance += coin[0]

    def take_front(self, k: int) -> list[Coin]:
        taken, self.coins = self.coins[:k], self.coins[k:]
        self.balance -= sum(c[0] for c in taken)
        return taken

    def remove(self, gone: set[tuple[bytes, int]]) -> None:
        keep = [c for c in self.coins if (c[1], c[2]) not in gone]
        if len(keep) != len(self.coins) - len(gone):
            raise ValueError("a coin to spend is not in the wallet")
        self.coins = keep
        self.balance = sum(c[0] for c in keep)

    def move_first(self, coin: Coin) -> None:
        """Put ``coin`` first (the next coin selection takes it)."""
        self.coins = [coin, *(c for c in self.coins if c != coin)]


@dataclass(frozen=True)
class Payment:
    """What a transaction did: its txid (display hex) and its outputs as coins, in order."""

    txid: str
    outputs: tuple[Coin, ...]
    fee: int

    def outpoint(self, n: int) -> str:
        return f"{self.txid}:{n}"


class UtxoChain:
    def __init__(self, out: Path, seed: bytes, truth: TruthWriter, start_time: int) -> None:
        self.seed = seed
        self.truth = truth
        self.blocks = BlockFileWriter(out)
        self.encoder = TxEncoder()
        self.next_address = 0
        self.time = start_time
        self.fee_rate = 2  # sat/vB of the block being built
        self._txs: list[tuple[bytes, bytes, bytes]] = []
        self._fees = 0
        self._credit: list[tuple[Wallet, Coin]] = []
        self._new: list[tuple[bytes, int, int, str]] = []
        self._immature: list[tuple[int, Wallet, Coin]] = []
        self.tx_count = 0

    @property
    def height(self) -> int:
        return self.blocks.height

    def address_text(self, a: Address) -> str:
        h160 = a[2][2:22] if a[1] == P2WPKH else a[2][3:23]
        if a[1] == P2WPKH:
            return segwit_address(HRP, 0, h160)
        return base58check_encode(P2PKH_PREFIX + h160)

    def new_address(self, actor: int, purpose: str, kind: int = P2WPKH) -> Address:
        """A new address of ``actor``; its truth row is buffered and its text computed in bulk."""
        n = self.next_address
        self.next_address += 1
        _, h160 = address_key(self.seed, n)
        self._new.append((h160, kind, actor, purpose))
        if len(self._new) >= ADDRESS_CHUNK:
            self.flush_addresses()
        return (n, kind, script_for(kind, h160))

    def flush_addresses(self) -> None:
        rows, self._new = self._new, []
        for kind in (P2WPKH, P2PKH):
            part = [r for r in rows if r[1] == kind]
            if not part:
                continue
            if kind == P2WPKH:
                texts: Any = p2wpkh_texts(
                    HRP, np.frombuffer(b"".join(r[0] for r in part), np.uint8).reshape(-1, 20)
                )
            else:
                texts = p2pkh_texts(P2PKH_PREFIX, [r[0] for r in part])
            self.truth.write_columns(
                "addresses",
                {"chain": [CHAIN] * len(part), "address": texts, "actor_id": [r[2] for r in part],
                 "purpose": [r[3] for r in part]},
            )  # fmt: skip

    def pubkey(self, n: int) -> bytes:
        return b"\x02" + hashlib.sha256(self.seed + n.to_bytes(8, "little")).digest()

    def can_pay(self, w: Wallet, amount: int, n_out: int = 2) -> bool:
        """Whether ``w`` can pay ``amount`` with a few inputs (checked before addresses are made)."""
        return w.balance >= amount + self.fee_for(min(len(w.coins), 8), n_out, w.kind)

    def receive_address(self, w: Wallet, purpose: str = "receive", fresh: bool = True) -> Address:
        if fresh or w.home is None:
            a = self.new_address(w.actor, purpose, w.kind)
            if w.home is None:
                w.home = a
            return a
        return w.home

    def fee_for(self, n_in: int, n_out: int, kind: int) -> int:
        return self.fee_rate * (_VSIZE_TX + n_in * _VSIZE_IN[kind] + n_out * _VSIZE_OUT[kind])

    def select(self, w: Wallet, amount: int, n_out: int) -> tuple[list[Coin], int]:
        """Oldest coins first until they cover ``amount`` plus the fee; returns (coins, fee)."""
        total, k = 0, 0
        coins = w.coins
        fee = self.fee_for(1, n_out, w.kind)
        while total < amount + fee:
            if k == len(coins):
                raise Insufficient
            total += coins[k][0]
            k += 1
            fee = self.fee_for(k, n_out, w.kind)
        return coins[:k], fee

    def pay(
        self,
        w: Wallet,
        outputs: Sequence[tuple[Wallet, Address, int]],
        *,
        coins: Sequence[Coin] | None = None,
        change: Address | None = None,
        fee: int | None = None,
        sweep: bool = False,
    ) -> Payment:
        """One transaction from ``w``: pays ``outputs`` (recipient wallet, address, value), change to
        ``change`` (default: the wallet's change behaviour), from ``coins`` (default: coin selection).
        ``sweep`` spends the coins whole: the last output receives everything less the fee."""
        if coins is None:
            chosen, est = self.select(w, sum(v for _, _, v in outputs), len(outputs) + 1)
        else:
            chosen = list(coins)
            est = self.fee_for(len(chosen), len(outputs) + (0 if sweep else 1), w.kind)
        fee = est if fee is None else fee
        total = sum(c[0] for c in chosen)
        outs = [(v, a, r) for r, a, v in outputs]
        if sweep:
            _, a, r = outs[-1]
            outs[-1] = (total - fee - sum(o[0] for o in outs[:-1]), a, r)
            if outs[-1][0] < DUST:
                raise Insufficient
        else:
            rest = total - fee - sum(o[0] for o in outs)
            if rest < 0:
                raise Insufficient
            if rest >= DUST:
                to = change or self.receive_address(w, "change", w.fresh_change)
                outs.append((rest, to, w))
            else:
                fee += rest
        if coins is None:
            w.take_front(len(chosen))
            return self.emit([], outs, fee, spent=chosen)
        return self.emit([(w, c) for c in chosen], outs, fee)

    def emit(
        self,
        inputs: Sequence[tuple[Wallet, Coin]],
        outs: Sequence[tuple[int, Address, Wallet]],
        fee: int,
        spent: Sequence[Coin] = (),
    ) -> Payment:
        """Write one transaction: ``inputs`` are removed from their wallets (coins already removed by
        the caller may be passed as ``spent``); outputs are credited at the end of the block."""
        by_wallet: dict[int, tuple[Wallet, set[tuple[bytes, int]]]] = {}
        for w, c in inputs:
            by_wallet.setdefault(id(w), (w, set()))[1].add((c[1], c[2]))
        for w, gone in by_wallet.values():
            w.remove(gone)
        chosen = [*spent, *(c for _, c in inputs)]
        ins = [(c[1], c[2], c[4], self.pubkey(c[3])) for c in chosen]
        raw, txid, wtxid = self.encoder.encode(ins, [(v, a[2]) for v, a, _ in outs])
        self._txs.append((raw, txid, wtxid))
        self._fees += fee
        self.tx_count += 1
        created = []
        for n, (v, a, r) in enumerate(outs):
            coin = (v, txid, n, a[0], a[1])
            created.append(coin)
            self._credit.append((r, coin))
        return Payment(txid[::-1].hex(), tuple(created), fee)

    def end_block(self, time: int, miner: Wallet, miner_address: Address, fee_rate: int) -> str:
        """Mine the block of the transactions made since the last one; coins they created become
        spendable; the coinbase pays the subsidy and fees to the miner (spendable after 100 blocks)."""
        height = self.height + 1
        reward = subsidy(height) + self._fees
        cb_txid, block_hash = self.blocks.add_block(time, [(reward, miner_address[2])], self._txs)
        self.tx_count += 1
        self._immature.append(
            (height + COINBASE_MATURITY, miner, (reward, cb_txid, 0, miner_address[0], miner_address[1]))
        )
        for w, coin in self._credit:
            w.credit(coin)
        self._credit.clear()
        self._txs = []
        self._fees = 0
        self.time = time
        self.fee_rate = fee_rate
        while self._immature and self._immature[0][0] <= height + 1:
            _, w, coin = self._immature.pop(0)
            w.credit(coin)
        return block_hash.hex()

    def close(self) -> None:
        self.flush_addresses()
        self.blocks.close()


def subsidy(height: int) -> int:
    """Regtest's schedule: 50 BTC halving every 150 blocks."""
    halvings = height // 150
    return 0 if halvings >= 64 else (50 * 100_000_000) >> halvings
