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

WORLD ?= world
CASE_KEY = $(WORLD)/cases/exchange-hack/answer_key.json
# what the demo reads from the exchange-hack case (the theft's output, the true cash-out addresses)
CASE_SEED = $$($(BIN)/python -c "import json;print(json.load(open('$(CASE_KEY)'))['seeds'][0]['seed'])")
CASE_THIEF = $$($(BIN)/python -c "import json;print(next(a['address'] for a in json.load(open('$(CASE_KEY)'))['addresses'] if a['role'] == 'theft'))")
CASE_CASHOUTS = $$($(BIN)/python -c "import json;print(*sorted({c['address'] for c in json.load(open('$(CASE_KEY)'))['cashouts']}))")

demo: $(STAMP)
	$(BIN)/fundtrail simulate --scenario small --seed 1 --out $(WORLD) --force
	$(BIN)/fundtrail --db $(DB) ingest bitcoin-blocks \
	    $(DATA)/bitcoin/bitcoinj-blocks/first-100k-blocks.dat \
	    $(DATA)/bitcoin/bitcoinj-blocks/block169482.dat \
	    $(DATA)/bitcoin/bitcoinj-blocks/block2278*.dat \
	    $(DATA)/bitcoin/bitcoinj-blocks/block3*.dat \
	    $(DATA)/bitcoin/bitcoinj-blocks/block4*.dat \
	    $(DATA)/bitcoin/bitcoin-s-blocks/000000000000000000050f70113ab1932c195442cb49bcc4ee4d7f426c8a3295.txt \
	    $(DATA)/bitcoin/bitcoin-s-blocks/00000000000000000008513c860373da0484f065983aeb063ebf81c172e81d48.txt
	$(BIN)/fundtrail --db $(DB) ingest bitcoin-blocks --network regtest $(WORLD)/bitcoin/blk*.dat
	$(BIN)/fundtrail --db $(DB) ingest ethereum-etl \
	    --blocks $(DATA)/ethereum-etl/test_stream/blocks_17173049_17173050/expected_blocks.json \
	    --transactions $(DATA)/ethereum-etl/test_stream/blocks_17173049_17173050/expected_transactions.json \
	    --logs $(DATA)/ethereum-etl/test_stream/blocks_17173049_17173050/expected_logs.json
	$(BIN)/fundtrail --db $(DB) ingest ethereum-etl --chain sim-ethereum --blocks $(WORLD)/ethereum/blocks.csv \
	    --transactions $(WORLD)/ethereum/transactions.csv --token-transfers $(WORLD)/ethereum/token_transfers.csv
	$(BIN)/fundtrail --db $(DB) summary
	$(BIN)/fundtrail --db $(DB) show tx f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16
	$(BIN)/fundtrail --db $(DB) show address --chain ethereum 0xb9d7934878b5fb9610b3fe8a5e441e8fad7e293f
	$(BIN)/fundtrail --db $(DB) labels import ofac-list $(DATA)/labels/ofac-sanctioned \
	    --entities $(DATA)/labels/ofac-sanctioned-entities/sanctioned-addresses.json
	$(BIN)/fundtrail --db $(DB) labels import tagpack $(DATA)/labels/graphsense-tagpacks/packs
	$(BIN)/fundtrail --db $(DB) labels import tagpack $(WORLD)/truth/labels.yaml
	$(BIN)/fundtrail --db $(DB) cluster
	$(BIN)/fundtrail --db $(DB) explain-cluster 14w8gyELsFkg3muiRs2Ptp5UYZHo6BaWX5 1AcC14cC4V4kzppdHygQoGbcSMhDbdAT7A
	$(BIN)/fundtrail --db $(DB) trace --from f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16:0 \
	    --direction backward --policy fifo
	$(BIN)/fundtrail --db $(DB) exposure
	$(BIN)/fundtrail --db $(DB) screen --chain tron TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq
	@echo "== training case exchange-hack: $$(head -1 $(WORLD)/cases/exchange-hack/briefing.md)"
	@tail -n +3 $(WORLD)/cases/exchange-hack/briefing.md | head -1
	$(BIN)/fundtrail --db $(DB) trace --chain bitcoin-regtest --from $(CASE_SEED) --hops 40 --by cluster
	$(BIN)/fundtrail --db $(DB) labels add --chain bitcoin-regtest $(CASE_THIEF) --label "exchange-hack: thief" \
	    --category hack --confidence 100
	$(BIN)/fundtrail --db $(DB) exposure --chain bitcoin-regtest
	$(BIN)/fundtrail --db $(DB) screen --chain bitcoin-regtest $(CASE_CASHOUTS)
	$(BIN)/fundtrail --db $(DB) detect
	$(BIN)/fundtrail --db $(DB) alerts list --chain bitcoin-regtest --limit 10
	$(BIN)/fundtrail --db $(DB) evaluate --truth $(WORLD)

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
