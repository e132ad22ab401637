"""Native coins and a bundled registry of major tokens (symbol, decimals), per chain.

Facts from the issuers' published contract addresses (and, for TRON, GraphSense's token configuration in
../shared/data/graphsense-lib/trx_56804500to56805500). A token not listed here still ingests: its symbol
and decimals are null (unknown) unless a node is given and the contract answers ``symbol()`` and
``decimals()``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Asset:
    symbol: str | None
    decimals: int | None
    name: str | None = None


NATIVE: dict[str, Asset] = {
    "ethereum": Asset("ETH", 18, "Ether"),
    "bsc": Asset("BNB", 18, "BNB"),
    "polygon": Asset("POL", 18, "Polygon ecosystem token"),
    "arbitrum": Asset("ETH", 18, "Ether"),
    "optimism": Asset("ETH", 18, "Ether"),
    "base": Asset("ETH", 18, "Ether"),
    "avalanche": Asset("AVAX", 18, "Avax"),
    "anvil": Asset("ETH", 18, "Ether (local test chain)"),
    "sim-ethereum": Asset("ETH", 18, "Ether (fundtrail's simulation network)"),
    "tron": Asset("TRX", 6, "Tronix"),
}

EVM_CHAINS = tuple(c for c in NATIVE if c != "tron")

SIM_USDT_CONTRACT = "a2f5ddceb526d412aa07f1cda3efa32fce3f7e20"

# contract key (20 bytes for EVM, 21 bytes for TRON) -> metadata
TOKENS: dict[str, dict[bytes, Asset]] = {
    "ethereum": {
        bytes.fromhex("dac17f958d2ee523a2206206994597c13d831ec7"): Asset("USDT", 6, "Tether USD"),
        bytes.fromhex("a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"): Asset("USDC", 6, "USD Coin"),
        bytes.fromhex("6b175474e89094c44da98b954eedeac495271d0f"): Asset("DAI", 18, "Dai Stablecoin"),
        bytes.fromhex("c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"): Asset("WETH", 18, "Wrapped Ether"),
        bytes.fromhex("2260fac5e5542a773aa44fbcfedf7c193bc2c599"): Asset("WBTC", 8, "Wrapped BTC"),
    },
    "bsc": {
        bytes.fromhex("55d398326f99059ff775485246999027b3197955"): Asset("USDT", 18, "Tether USD (BSC)"),
        bytes.fromhex("8ac76a51cc950d9822d68b83fe1ad97b32cd580d"): Asset("USDC", 18, "USD Coin (BSC)"),
    },
    "polygon": {
        bytes.fromhex("c2132d05d31c914a87c6611c10748aeb04b58e8f"): Asset("USDT", 6, "Tether USD (PoS)"),
    },
    # the simulator's USDT-like token (6 decimals, as Tether's), at keccak("fundtrail simulation: USDT")[-20:]
    "sim-ethereum": {
        bytes.fromhex(SIM_USDT_CONTRACT): Asset("USDT", 6, "Tether USD (simulated)"),
    },
    "tron": {
        bytes.fromhex("41a614f803b6fd780986a42c78ec9c7f77e6ded13c"): Asset("USDT", 6, "Tether USD"),
        bytes.fromhex("413487b63d30b5b2c87fb7ffa8bcfade38eaac1abe"): Asset("USDC", 6, "USD Coin"),
        bytes.fromhex("41891cdb91d149f23b1a45d9c5ca78a88d0cb44c18"): Asset("WTRX", 6, "Wrapped TRX"),
    },
}


def token(chain: str, contract: bytes) -> Asset | None:
    return TOKENS.get(chain, {}).get(contract)
