# The README's two set-up commands: `make demo` and `make test`. Each builds .venv by itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data
DB ?= fundtrail.duckdb

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fundtrail --db $(DB) ingest bitcoin-blocks \
	    $(DATA)/bitcoin/bitcoinj-blocks/first-100k-blocks.dat \
	    $(DATA)/bitcoin/bitcoinj-blocks/block169482.dat \
	    $(DATA)/bitcoin/bitcoinj-blocks/block2278*.dat \
	    $(DATA)/bitcoin/bitcoinj-blocks/block3*.dat \
	    $(DATA)/bitcoin/bitcoinj-blocks/block4*.dat \
	    $(DATA)/bitcoin/bitcoin-s-blocks/000000000000000000050f70113ab1932c195442cb49bcc4ee4d7f426c8a3295.txt \
	    $(DATA)/bitcoin/bitcoin-s-blocks/00000000000000000008513c860373da0484f065983aeb063ebf81c172e81d48.txt
	$(BIN)/fundtrail --db $(DB) ingest ethereum-etl \
	    --blocks $(DATA)/ethereum-etl/test_stream/blocks_17173049_17173050/expected_blocks.json \
	    --transactions $(DATA)/ethereum-etl/test_stream/blocks_17173049_17173050/expected_transactions.json \
	    --logs $(DATA)/ethereum-etl/test_stream/blocks_17173049_17173050/expected_logs.json
	$(BIN)/fundtrail --db $(DB) summary
	$(BIN)/fundtrail --db $(DB) show block 170
	$(BIN)/fundtrail --db $(DB) show tx f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16
	$(BIN)/fundtrail --db $(DB) show address 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa
	$(BIN)/fundtrail --db $(DB) show tx --chain ethereum \
	    0xeb107a40ba73a50c79a9f2026e902d758d1c5e5e211f7a7db1b294f88f118dd0
	$(BIN)/fundtrail --db $(DB) show address --chain ethereum 0xb9d7934878b5fb9610b3fe8a5e441e8fad7e293f
	$(BIN)/fundtrail --db $(DB) labels import ofac-list $(DATA)/labels/ofac-sanctioned \
	    --entities $(DATA)/labels/ofac-sanctioned-entities/sanctioned-addresses.json
	$(BIN)/fundtrail --db $(DB) labels import tagpack $(DATA)/labels/graphsense-tagpacks/packs
	$(BIN)/fundtrail --db $(DB) labels list --category sanctioned --chain tron --limit 5
	$(BIN)/fundtrail --db $(DB) cluster
	$(BIN)/fundtrail --db $(DB) show cluster 14w8gyELsFkg3muiRs2Ptp5UYZHo6BaWX5
	$(BIN)/fundtrail --db $(DB) explain-cluster 14w8gyELsFkg3muiRs2Ptp5UYZHo6BaWX5 1AcC14cC4V4kzppdHygQoGbcSMhDbdAT7A
	$(BIN)/fundtrail --db $(DB) show address 1NDyJtNTjmwk5xPNhjgAMu4HDHigtobu1s
	$(BIN)/fundtrail --db $(DB) trace --from 0437cd7f8525ceed2324359c2d0ba26006d92d856a9c20fa0241106ee5a597c9:0 --hops 5
	$(BIN)/fundtrail --db $(DB) trace --from f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16:0 \
	    --direction backward --policy fifo
	$(BIN)/fundtrail --db $(DB) exposure --chain bitcoin
	$(BIN)/fundtrail --db $(DB) screen 1NDyJtNTjmwk5xPNhjgAMu4HDHigtobu1s 12cbQLTFMXRnSzktFkuoG3eHoMeFtpTu3S
	$(BIN)/fundtrail --db $(DB) screen --chain tron TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# npm test tools (anvil, solc) for the EVM RPC tests, pinned by package-lock.json
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund && touch $(NODE_STAMP); \
	else echo "npm not found: the anvil tests will be skipped (install Node.js >= 20 and npm to run them)"; fi

test: lint $(NODE_STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
