"""A real local EVM node for tests: anvil from the npm package ``@foundry-rs/anvil``, and Solidity compiled
with the npm package ``solc`` (solcjs, run by node). Both are pinned in package.json/package-lock.json and
installed into node_modules by ``make test`` (``npm ci``).

Where node or npm is not installed on the machine at all, the tests that need them skip, saying so. Where
node is there but the packages are not installed (``npm ci`` not run), they fail: on CI a missing anvil
must not pass for a green run.

:func:`running_anvil` starts anvil on 127.0.0.1 at a free port, waits until it answers, and kills it at
the end. It is talked to with the project's own JSON-RPC client (no web3 dependency).
"""

from __future__ import annotations

import json
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak

from fundtrail.ingest.jsonrpc import JsonRpcClient, SourceUnavailable, parse_url

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "node_modules"
INSTALL_FIX = "run `make test` (or `npm ci` in the repository root) to install the npm test tools"
START_TIMEOUT_S = 20.0
ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def _platform_binary() -> Path:
    os_name = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform, sys.platform)
    arch = ARCH.get(platform.machine().lower(), platform.machine().lower())
    name = "anvil.exe" if os_name == "win32" else "anvil"
    return NODE_MODULES / "@foundry-rs" / f"anvil-{os_name}-{arch}" / "bin" / name


def require_node_tools() -> None:
    """Skip when node/npm are absent from the machine; fail when they are there but npm ci was not run."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed on this machine: the anvil/solc tests need Node.js"
        )
    if not _platform_binary().is_file() and not (NODE_MODULES / ".bin" / "anvil").exists():
        pytest.fail(f"anvil is not installed in {NODE_MODULES}: {INSTALL_FIX}")
    if not (NODE_MODULES / "solc" / "soljson.js").is_file():
        pytest.fail(f"solc is not installed in {NODE_MODULES}: {INSTALL_FIX}")


def anvil_command() -> list[str]:
    binary = _platform_binary()
    if binary.is_file():
        return [str(binary)]  # the platform package's binary itself: no node wrapper between us and it
    return [str(NODE_MODULES / ".bin" / "anvil")]


_COMPILE_JS = """
const solc = require("solc");
let src = ""; process.stdin.on("data", d => src += d).on("end", () => {
  const input = {language: "Solidity", sources: {"test.sol": {content: src}},
                 settings: {optimizer: {enabled: false},
                            outputSelection: {"*": {"*": ["abi", "evm.bytecode.object"]}}}};
  const out = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (out.errors || []).filter(e => e.severity === "error");
  if (errors.length) { console.error(errors.map(e => e.formattedMessage).join("\\n")); process.exit(1); }
  const res = {version: solc.version(), contracts: {}};
  for (const [name, c] of Object.entries(out.contracts["test.sol"]))
    res.contracts[name] = c.evm.bytecode.object;
  process.stdout.write(JSON.stringify(res));
});
"""


def compile_solidity(source: str) -> tuple[str, dict[str, bytes]]:
    """solc's version and the creation bytecode of every contract in ``source``."""
    done = subprocess.run(
        ["node", "-e", _COMPILE_JS], input=source, capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    if done.returncode != 0:
        raise AssertionError(f"solc failed: {done.stderr.strip()}")
    out = json.loads(done.stdout)
    return str(out["version"]), {name: bytes.fromhex(code) for name, code in out["contracts"].items()}


def selector(signature: str) -> bytes:
    return bytes(keccak(text=signature)[:4])


def word(value: int | bytes) -> bytes:
    """One ABI word: an unsigned integer or an address (20 bytes, left-padded)."""
    if isinstance(value, bytes):
        return value.rjust(32, b"\0")
    return value.to_bytes(32, "big")


def calldata(signature: str, *args: int | bytes) -> bytes:
    return selector(signature) + b"".join(word(a) for a in args)


def hexa(key: bytes) -> str:
    return "0x" + key.hex()


class Anvil:
    """A running anvil: JSON-RPC helpers over the project's client."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.client = JsonRpcClient(parse_url(self.url), tries=1, timeout=30)
        self.accounts: list[bytes] = []

    def rpc(self, method: str, *params: Any) -> Any:
        return self.client.call(method, params)

    def send(self, sender: bytes, to: bytes | None = None, value: int = 0, data: bytes = b"",
             gas: int | None = None) -> bytes:  # fmt: skip
        """Send a transaction from an unlocked dev account; its hash, once anvil has mined it (in a block
        of its own: anvil mines each transaction as it comes, but answers before the block is there)."""
        tx: dict[str, Any] = {"from": hexa(sender), "value": hex(value)}
        if to is not None:
            tx["to"] = hexa(to)
        if data:
            tx["data"] = hexa(data)
        if gas is not None:
            tx["gas"] = hex(gas)  # a fixed limit: anvil skips estimation and mines even a reverting tx
        tx_hash = bytes.fromhex(self.rpc("eth_sendTransaction", tx)[2:])
        self.receipt(tx_hash)
        return tx_hash

    def receipt(self, tx_hash: bytes) -> dict[str, Any]:
        """The receipt, waiting for anvil to mine the transaction (it mines each one as it comes)."""
        deadline = time.monotonic() + 10
        while (
            r := self.rpc("eth_getTransactionReceipt", hexa(tx_hash))
        ) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(r, dict), f"0x{tx_hash.hex()} not mined"
        return r

    def balance(self, address: bytes, block: int | str = "latest") -> int:
        tag = hex(block) if isinstance(block, int) else block
        return int(self.rpc("eth_getBalance", hexa(address), tag), 16)

    def call(self, to: bytes, data: bytes) -> bytes:
        return bytes.fromhex(self.rpc("eth_call", {"to": hexa(to), "data": hexa(data)}, "latest")[2:])

    def tip(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def deploy(self, sender: bytes, code: bytes, value: int = 0) -> bytes:
        r = self.receipt(self.send(sender, None, value, code))
        assert r["status"] == "0x1", r
        return bytes.fromhex(r["contractAddress"][2:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_anvil(extra: Sequence[str] = ()) -> Iterator[Anvil]:
    """anvil on 127.0.0.1 at a free port (its default chain id 31337, ten funded dev accounts)."""
    require_node_tools()
    failure = ""
    for _attempt in range(3):  # the free port may be taken between our look and anvil's bind
        port = _free_port()
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed below) a file, not a pipe: a full one stalls anvil
        process = subprocess.Popen(
            [*anvil_command(), "--host", "127.0.0.1", "--port", str(port), "--silent", *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        node = Anvil(process, port)
        deadline = time.monotonic() + START_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            try:
                node.accounts = [bytes.fromhex(a[2:]) for a in node.rpc("eth_accounts")]
                break
            except SourceUnavailable:
                time.sleep(0.05)
        if node.accounts:
            break
        node.client.close()
        _stop(process)
        log.seek(0)
        failure = log.read().decode(errors="replace")[-500:]
        log.close()
    else:
        raise AssertionError(f"anvil did not start in 3 tries: {failure}")
    try:
        yield node
    finally:
        node.client.close()
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
