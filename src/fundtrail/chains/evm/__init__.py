"""EVM chains (Ethereum, BSC, Polygon, ...): address codec, token registry, ETL and RPC decoding."""
