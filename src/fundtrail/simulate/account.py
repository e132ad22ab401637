"""The simulated account chain (``sim-ethereum``): balances of ETH and the USDT-like token per address,
transactions with exact gas fees, blocks every 12 seconds written as an ethereum-etl export.

Ether enters the world through beacon withdrawals (EIP-4895), USDT through the issuer's mints, as on
Ethereum. A transfer that the sender's balance cannot pay (value plus the fee) is refused with
:class:`Insufficient`, so every export replays to non-negative balances.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fundtrail.chains.assets import SIM_USDT_CONTRACT
from fundtrail.simulate.etl_export import SWAP_GAS, TOKEN_GAS, EtlWriter, fast_keccak256
from fundtrail.simulate.truth import TruthWriter
from fundtrail.simulate.utxo import Insufficient

CHAIN = "sim-ethereum"
USDT = bytes.fromhex(SIM_USDT_CONTRACT)
NATIVE_GAS = 21_000
GWEI = 10**9
ETH = 10**18
USDT_UNIT = 10**6
MAX_WITHDRAWALS = 16  # per block (EIP-4895's MAX_WITHDRAWALS_PER_PAYLOAD on mainnet)


class AccountChain:
    def __init__(
        self, out: Path, seed: bytes, truth: TruthWriter, start_time: int, interval: int = 12
    ) -> None:
        self.seed = seed
        self.truth = truth
        self.etl = EtlWriter(out)
        self._keccak = fast_keccak256()
        self.eth: dict[bytes, int] = {}
        self.usdt: dict[bytes, int] = {}
        self.next_address = 0
        self.interval = interval
        self.block_time = start_time + interval  # time of the open block
        self.gas_price = 10 * GWEI
        self.in_block = 0
        self.per_block = 1
        self.tx_count = 0
        self.blocks = 0
        self._validator = 0
        self._withdrawals: list[tuple[bytes, int]] = []

    def new_address(self, actor: int, purpose: str) -> bytes:
        a = hashlib.sha256(self.seed + b"eth" + self.next_address.to_bytes(8, "little")).digest()[-20:]
        self.next_address += 1
        self.truth.add("addresses", CHAIN, self.text(a), actor, purpose)
        return a

    def text(self, a: bytes) -> str:
        """EIP-55 checksummed text (the same rule as ``labels.codecs.eip55``, with the fast Keccak)."""
        hexaddr = a.hex()
        digest = self._keccak(hexaddr.encode()).hex()
        return "0x" + "".join([c.upper() if d in "89abcdef" else c for c, d in zip(hexaddr, digest)])

    def native_fee(self) -> int:
        return NATIVE_GAS * self.gas_price

    def token_fee(self) -> int:
        return TOKEN_GAS * self.gas_price

    def _after(self) -> None:
        self.tx_count += 1
        self.in_block += 1
        if self.in_block >= self.per_block:
            self._seal()

    def _pay_gas(self, sender: bytes, fee: int, value: int = 0) -> None:
        have = self.eth.get(sender, 0)
        if have < fee + value:
            raise Insufficient
        self.eth[sender] = have - fee - value

    def send_eth(self, sender: bytes, to: bytes, value: int) -> str:
        self._pay_gas(sender, self.native_fee(), value)
        self.eth[to] = self.eth.get(to, 0) + value
        h = self.etl.native(sender, to, value, self.gas_price)
        self._after()
        return h

    def send_all_eth(self, sender: bytes, to: bytes) -> str:
        """Send the whole ETH balance less the fee (an emptying sweep)."""
        value = self.eth.get(sender, 0) - self.native_fee()
        if value <= 0:
            raise Insufficient
        return self.send_eth(sender, to, value)

    def send_usdt(self, sender: bytes, to: bytes, value: int) -> str:
        have = self.usdt.get(sender, 0)
        if have < value or value <= 0:
            raise Insufficient
        self._pay_gas(sender, self.token_fee())
        self.usdt[sender] = have - value
        self.usdt[to] = self.usdt.get(to, 0) + value
        h = self.etl.token(USDT, sender, to, value, self.gas_price)
        self._after()
        return h

    def swap_eth_for_usdt(self, user: bytes, pool: bytes, eth_in: int, usdt_out: int) -> str:
        """A swap through a DEX pool: ETH from the user to the pool and USDT from the pool to the user in
        one transaction."""
        if self.usdt.get(pool, 0) < usdt_out:
            raise Insufficient
        self._pay_gas(user, SWAP_GAS * self.gas_price, eth_in)
        self.eth[pool] = self.eth.get(pool, 0) + eth_in
        self.usdt[pool] -= usdt_out
        self.usdt[user] = self.usdt.get(user, 0) + usdt_out
        h = self.etl.call(user, pool, eth_in, self.gas_price, [(USDT, pool, user, usdt_out)])
        self._after()
        return h

    def mint_usdt(self, issuer: bytes, to: bytes, value: int) -> str:
        self._pay_gas(issuer, self.token_fee())
        self.usdt[to] = self.usdt.get(to, 0) + value
        h = self.etl.mint(USDT, issuer, to, value, self.gas_price)
        self._after()
        return h

    def withdrawal(self, to: bytes, wei: int) -> None:
        """A beacon-chain withdrawal of ``wei`` (a whole number of gwei) to ``to``: queued, and credited
        when a block takes it (at most 16 per block, Ethereum's MAX_WITHDRAWALS_PER_PAYLOAD)."""
        self._withdrawals.append((to, wei))

    def _take_withdrawals(self) -> None:
        take, self._withdrawals = self._withdrawals[:MAX_WITHDRAWALS], self._withdrawals[MAX_WITHDRAWALS:]
        for to, wei in take:
            self.eth[to] = self.eth.get(to, 0) + wei
            self.etl.withdrawal(to, wei // GWEI, self._validator)
            self._validator += 1

    def _seal(self) -> None:
        if self._withdrawals:
            self._take_withdrawals()
        self.etl.seal_block(self.block_time)
        self.blocks += 1
        self.block_time += self.interval
        self.in_block = 0

    def start_tick(self, expected_txs: int, tick_seconds: int, gas_price: int) -> None:
        self.per_block = max(1, -(-expected_txs // max(1, tick_seconds // self.interval)))
        self.gas_price = gas_price

    def end_tick(self, until: int) -> None:
        """Seal blocks (the open one, then empty ones) until the next block would be after ``until``."""
        while self.block_time <= until:
            self._seal()

    def flush_withdrawals(self) -> None:
        """Seal blocks until every queued withdrawal is credited."""
        while self._withdrawals:
            self._seal()

    def close(self) -> None:
        self._seal()
        self.flush_withdrawals()
        self.etl.close()
