"""Reference prices (USD per whole coin) that detectors use to compare amounts with thresholds given in
fiat (structuring under USD 3,000 ...). They are configuration, not market data: fundtrail holds no price
feed. Defaults match the simulator's fixed prices; override them with ``[detection.prices_usd]`` in the
configuration file for real data (docs/detectors/README.md)."""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_PRICES_USD: dict[str, float] = {
    "BTC": 90_000.0,
    "ETH": 3_000.0,
    "WETH": 3_000.0,
    "WBTC": 90_000.0,
    "USDT": 1.0,
    "USDC": 1.0,
    "DAI": 1.0,
    "TRX": 0.25,
    "BNB": 600.0,
}
DECIMALS = {"BTC": 8, "ETH": 18, "WETH": 18, "WBTC": 8, "USDT": 6, "USDC": 6, "DAI": 18, "TRX": 6, "BNB": 18}


def usd(
    asset: str, amount: int, decimals: int | None = None, prices: Mapping[str, float] | None = None
) -> float | None:
    """USD value of ``amount`` base units of ``asset``; None without a price or known decimals."""
    p = (prices or DEFAULT_PRICES_USD).get(asset.upper())
    d = decimals if decimals is not None else DECIMALS.get(asset.upper())
    if p is None or d is None:
        return None
    return float(amount / 10**d * p)
