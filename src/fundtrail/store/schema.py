"""The store's schema: numbered forward migrations. A store records the version it is at; opening it
applies the migrations it lacks, in one transaction, and refuses a store from a newer fundtrail.

Column types: amounts in base units are BIGINT for Bitcoin (satoshi; 21e14 < 2^63) and BIGNUM (DuckDB's
arbitrary-precision integer) on account chains, where a token amount is a uint256: DECIMAL(38,0) and
HUGEINT hold less than 2^256, BIGNUM holds 2^256-1 exactly and sums exactly. Hashes are BLOB in
display byte order (big-endian, as explorers show them), so ``hex(hash)`` is what a user reads.
Addresses are keys (BLOB: kind byte + payload, see chains/bitcoin/address.py) with dense integer ids,
unique per chain, numbered across all chains. Every table has a ``chain`` column.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "Bitcoin blocks, transactions, inputs, outputs and addresses",
        [
            """CREATE TABLE blocks (
                chain VARCHAR NOT NULL, block_id BIGINT NOT NULL, hash BLOB NOT NULL, height BIGINT,
                height_source VARCHAR, prev_hash BLOB NOT NULL, merkle_root BLOB NOT NULL,
                version BIGINT NOT NULL, time BIGINT NOT NULL, bits UINTEGER NOT NULL,
                nonce UINTEGER NOT NULL, tx_count INTEGER NOT NULL, size INTEGER NOT NULL,
                stripped_size INTEGER NOT NULL, weight BIGINT NOT NULL, merkle_ok BOOLEAN NOT NULL,
                witness_ok BOOLEAN, source VARCHAR NOT NULL, ingested_at TIMESTAMPTZ NOT NULL)""",
            """CREATE TABLE transactions (
                chain VARCHAR NOT NULL, tx_id BIGINT NOT NULL, block_id BIGINT NOT NULL,
                position INTEGER NOT NULL, txid BLOB NOT NULL, wtxid BLOB NOT NULL,
                version UINTEGER NOT NULL, locktime UINTEGER NOT NULL, size INTEGER NOT NULL,
                weight BIGINT NOT NULL, is_coinbase BOOLEAN NOT NULL, input_count INTEGER NOT NULL,
                output_count INTEGER NOT NULL, input_value BIGINT, output_value BIGINT NOT NULL,
                fee BIGINT, coinbase_script BLOB)""",
            """CREATE TABLE tx_outputs (
                chain VARCHAR NOT NULL, tx_id BIGINT NOT NULL, n INTEGER NOT NULL, value BIGINT NOT NULL,
                script_type VARCHAR NOT NULL, address_id BIGINT, script BLOB)""",
            """CREATE TABLE tx_inputs (
                chain VARCHAR NOT NULL, tx_id BIGINT NOT NULL, n INTEGER NOT NULL,
                prev_txid BLOB NOT NULL, prev_vout UINTEGER NOT NULL, sequence UINTEGER NOT NULL,
                witness_items INTEGER NOT NULL, prev_tx_id BIGINT, address_id BIGINT, value BIGINT,
                resolved BOOLEAN)""",
            """CREATE TABLE unresolved_inputs (
                chain VARCHAR NOT NULL, tx_id BIGINT NOT NULL, n INTEGER NOT NULL,
                prev_txid BLOB NOT NULL, prev_vout UINTEGER NOT NULL)""",
            """CREATE TABLE addresses (
                chain VARCHAR NOT NULL, address_id BIGINT NOT NULL, key BLOB NOT NULL)""",
            "CREATE INDEX blocks_hash ON blocks (hash)",
        ],
    ),
    (
        2,
        "Account chains: transactions, transfers (native, internal, token, fee, withdrawal), assets",
        [
            "DROP INDEX blocks_hash",  # DuckDB alters no table an index depends on
            *(
                f"ALTER TABLE blocks ALTER COLUMN {c} DROP NOT NULL"
                for c in (
                    "merkle_root",
                    "merkle_ok",
                    "version",
                    "bits",
                    "nonce",
                    "tx_count",
                    "size",
                    "stripped_size",
                    "weight",
                )
            ),
            "ALTER TABLE blocks ADD COLUMN miner_id BIGINT",
            "ALTER TABLE blocks ADD COLUMN gas_used BIGINT",
            "ALTER TABLE blocks ADD COLUMN base_fee BIGNUM",
            "CREATE INDEX blocks_hash ON blocks (hash)",
            """CREATE TABLE assets (
                chain VARCHAR NOT NULL, asset_id BIGINT NOT NULL, contract BLOB, symbol VARCHAR,
                decimals INTEGER, name VARCHAR, metadata_source VARCHAR NOT NULL)""",
            """CREATE TABLE account_txs (
                chain VARCHAR NOT NULL, tx_id BIGINT NOT NULL, block_id BIGINT NOT NULL,
                position INTEGER NOT NULL, hash BLOB NOT NULL, from_id BIGINT NOT NULL, to_id BIGINT,
                created_id BIGINT, value BIGNUM NOT NULL, nonce BIGINT, gas BIGINT, gas_price BIGNUM,
                gas_used BIGINT, fee BIGNUM, status BOOLEAN, tx_type INTEGER, method BLOB)""",
            """CREATE TABLE transfers (
                chain VARCHAR NOT NULL, tx_id BIGINT, tx_hash BLOB, block_id BIGINT NOT NULL,
                kind VARCHAR NOT NULL,
                log_index INTEGER, trace_position VARCHAR, asset_id BIGINT NOT NULL,
                from_id BIGINT NOT NULL, to_id BIGINT NOT NULL, amount BIGNUM NOT NULL)""",
        ],
    ),
    (
        3,
        "Entities: attribution labels with provenance; address clusters with their evidence",
        [
            # single raw transactions (``ingest bitcoin-tx``) are stored before any block holds them
            "ALTER TABLE transactions ALTER COLUMN block_id DROP NOT NULL",
            "ALTER TABLE transactions ALTER COLUMN position DROP NOT NULL",
            """CREATE TABLE labels (
                label_id BIGINT NOT NULL, source VARCHAR NOT NULL, chain VARCHAR NOT NULL,
                address VARCHAR NOT NULL, key BLOB, label VARCHAR NOT NULL, category VARCHAR NOT NULL,
                confidence INTEGER, first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ,
                is_cluster_definer BOOLEAN NOT NULL, context VARCHAR, created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL)""",
            """CREATE TABLE label_sources (
                source VARCHAR NOT NULL, importer VARCHAR NOT NULL, path VARCHAR,
                imported_at TIMESTAMPTZ NOT NULL, tag_count BIGINT NOT NULL)""",
            """CREATE TABLE clusters (
                chain VARCHAR NOT NULL, address_id BIGINT NOT NULL, cluster_id BIGINT NOT NULL)""",
            """CREATE TABLE cluster_evidence (
                chain VARCHAR NOT NULL, a_id BIGINT NOT NULL, b_id BIGINT NOT NULL,
                heuristic VARCHAR NOT NULL, tx_id BIGINT)""",
            """CREATE TABLE cluster_refusals (
                chain VARCHAR NOT NULL, a_id BIGINT NOT NULL, b_id BIGINT NOT NULL,
                heuristic VARCHAR NOT NULL, tx_id BIGINT, size BIGINT NOT NULL, max_size BIGINT NOT NULL)""",
            """CREATE TABLE cluster_state (
                chain VARCHAR NOT NULL, config VARCHAR NOT NULL, tx_watermark BIGINT NOT NULL,
                tip_height BIGINT, tip_hash BLOB, labels_version VARCHAR NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL)""",
            "CREATE TABLE cluster_pending (chain VARCHAR NOT NULL, tx_id BIGINT NOT NULL)",
        ],
    ),
    (
        4,
        "Screening: per-cluster exposure to categories (direct and indirect), with evidence",
        [
            """CREATE TABLE exposure (
                chain VARCHAR NOT NULL, asset_id BIGINT NOT NULL, cluster_id BIGINT NOT NULL,
                scope VARCHAR NOT NULL, direction VARCHAR NOT NULL, category VARCHAR NOT NULL,
                amount HUGEINT NOT NULL, share DOUBLE NOT NULL, hops INTEGER NOT NULL)""",
            """CREATE TABLE exposure_totals (
                chain VARCHAR NOT NULL, asset_id BIGINT NOT NULL, cluster_id BIGINT NOT NULL,
                received HUGEINT NOT NULL, sent HUGEINT NOT NULL)""",
            """CREATE TABLE exposure_evidence (
                chain VARCHAR NOT NULL, asset_id BIGINT NOT NULL, cluster_id BIGINT NOT NULL,
                scope VARCHAR NOT NULL, direction VARCHAR NOT NULL, category VARCHAR NOT NULL,
                counterparty_id BIGINT NOT NULL, amount HUGEINT NOT NULL, hops INTEGER NOT NULL,
                tx_ids BIGINT[] NOT NULL)""",
            """CREATE TABLE exposure_state (
                chain VARCHAR NOT NULL, asset_id BIGINT NOT NULL, config VARCHAR NOT NULL,
                tx_watermark BIGINT NOT NULL, clusters_version VARCHAR NOT NULL,
                labels_version VARCHAR NOT NULL, updated_at TIMESTAMPTZ NOT NULL)""",
        ],
    ),
    (
        5,
        "Platform: organisations, users, API keys, the hash-chained audit log, cases, private labels",
        [
            # ids are dense, assigned by the one writer (max + 1); id 0 is the installation's local
            # administrator (the CLI). No indexes: DuckDB alters no table an index depends on.
            """CREATE TABLE orgs (
                org_id BIGINT NOT NULL, name VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL)""",
            """CREATE TABLE users (
                user_id BIGINT NOT NULL, name VARCHAR NOT NULL, org_id BIGINT NOT NULL, role VARCHAR NOT NULL,
                created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)""",
            # secret_sha256: SHA-256 of the 256-bit random secret (never the secret itself)
            """CREATE TABLE api_keys (
                key_id VARCHAR NOT NULL, user_id BIGINT NOT NULL, secret_sha256 BLOB NOT NULL,
                prefix VARCHAR NOT NULL, rate_limit_per_s INTEGER NOT NULL, created_at TIMESTAMPTZ NOT NULL,
                revoked_at TIMESTAMPTZ, last_used_at TIMESTAMPTZ)""",
            # every field but hash is hashed as stored (``logged_at`` is text: the hash input is exact)
            """CREATE TABLE audit_log (
                seq BIGINT NOT NULL, logged_at VARCHAR NOT NULL, user_id BIGINT, user_name VARCHAR NOT NULL,
                org_id BIGINT, action VARCHAR NOT NULL, target VARCHAR NOT NULL, params VARCHAR NOT NULL,
                result_digest VARCHAR NOT NULL, prev_hash VARCHAR NOT NULL, hash VARCHAR NOT NULL)""",
            # one row: the last entry's seq and hash, written with it (deleting the last entries shows)
            """CREATE TABLE audit_head (
                seq BIGINT NOT NULL, hash VARCHAR NOT NULL, updated_at TIMESTAMPTZ NOT NULL)""",
            # origin: provenance (JSON) of a case imported from a package, null for a case opened here
            """CREATE TABLE cases (
                case_id BIGINT NOT NULL, org_id BIGINT NOT NULL, title VARCHAR NOT NULL,
                description VARCHAR, status VARCHAR NOT NULL, created_by VARCHAR NOT NULL,
                assignee_id BIGINT, created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL,
                origin VARCHAR)""",
            """CREATE TABLE case_subjects (
                case_id BIGINT NOT NULL, subject_id BIGINT NOT NULL, kind VARCHAR NOT NULL,
                chain VARCHAR NOT NULL, value VARCHAR NOT NULL, note VARCHAR, added_by VARCHAR NOT NULL,
                added_at TIMESTAMPTZ NOT NULL)""",
            """CREATE TABLE case_notes (
                case_id BIGINT NOT NULL, note_id BIGINT NOT NULL, author VARCHAR NOT NULL,
                text VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL)""",
            """CREATE TABLE case_attachments (
                case_id BIGINT NOT NULL, attachment_id BIGINT NOT NULL, note_id BIGINT,
                name VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, size BIGINT NOT NULL, content BLOB NOT NULL,
                added_by VARCHAR NOT NULL, added_at TIMESTAMPTZ NOT NULL)""",
            # params and result: canonical JSON; tip: the chain's stored tip when the snapshot ran
            """CREATE TABLE case_snapshots (
                case_id BIGINT NOT NULL, snapshot_id BIGINT NOT NULL, kind VARCHAR NOT NULL,
                title VARCHAR, chain VARCHAR NOT NULL, params VARCHAR NOT NULL, tip_height BIGINT,
                tip_hash VARCHAR, result VARCHAR NOT NULL, result_digest VARCHAR NOT NULL,
                created_by VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL)""",
            """CREATE TABLE case_shares (
                case_id BIGINT NOT NULL, org_id BIGINT NOT NULL, access VARCHAR NOT NULL,
                granted_by VARCHAR NOT NULL, granted_at TIMESTAMPTZ NOT NULL)""",
            """CREATE TABLE private_labels (
                label_id BIGINT NOT NULL, org_id BIGINT NOT NULL, chain VARCHAR NOT NULL,
                address VARCHAR NOT NULL, category VARCHAR NOT NULL, label VARCHAR NOT NULL,
                created_by VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL)""",
            # Ed25519 public keys of peer installations whose case packages this one imports
            """CREATE TABLE trusted_keys (
                name VARCHAR NOT NULL, public_key VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL,
                added_by VARCHAR NOT NULL, added_at TIMESTAMPTZ NOT NULL)""",
        ],
    ),
    (
        6,
        "Detection: the alert queue, the audit of alert status changes, and detector runs",
        [
            # one row per alert; dedup_key is unique (enforced by the one writer, detection/engine.py);
            # addresses, txids, entities and evidence are JSON text; amount is the exact decimal text of
            # base units of ``asset`` (null: unknown); window_* and the runs are Unix seconds and run ids
            """CREATE TABLE alerts (
                alert_id BIGINT NOT NULL, dedup_key VARCHAR NOT NULL, detector VARCHAR NOT NULL,
                typology VARCHAR NOT NULL, chain VARCHAR NOT NULL, severity VARCHAR NOT NULL,
                score DOUBLE NOT NULL, addresses VARCHAR NOT NULL, txids VARCHAR NOT NULL,
                entities VARCHAR NOT NULL, window_start BIGINT NOT NULL, window_end BIGINT NOT NULL,
                amount VARCHAR, asset VARCHAR, explanation VARCHAR NOT NULL, evidence VARCHAR NOT NULL,
                status VARCHAR NOT NULL, status_reason VARCHAR, first_seen_run BIGINT NOT NULL,
                last_seen_run BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL)""",
            # every status change of an alert (its creation included: from_status null), in seq order
            """CREATE TABLE alert_events (
                alert_id BIGINT NOT NULL, seq INTEGER NOT NULL, user_id BIGINT, who VARCHAR NOT NULL,
                changed_at TIMESTAMPTZ NOT NULL, from_status VARCHAR, to_status VARCHAR NOT NULL,
                reason VARCHAR)""",
            # chains, detectors, tips ({chain: height}) and counts are JSON text; since_height is the
            # explicit --since (null: incremental, from each chain's last tip)
            """CREATE TABLE detector_runs (
                run_id BIGINT NOT NULL, started TIMESTAMPTZ NOT NULL, finished TIMESTAMPTZ NOT NULL,
                chains VARCHAR NOT NULL, detectors VARCHAR NOT NULL, since_height BIGINT,
                tips VARCHAR NOT NULL, counts VARCHAR NOT NULL, seconds DOUBLE NOT NULL)""",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]
