"""ERC-20 / TRC-20 ``Transfer(address,address,uint256)`` logs -> token transfers.

The standard form has three topics (signature, from, to) and the amount as the 32-byte data word. Other
logs with the same signature are not fungible-token transfers of this form: ERC-721 indexes the token id
as a fourth topic (no data), and a few old tokens index nothing. They are counted and skipped, not
guessed (ethereum-etl decodes some non-indexed variants too; see docs/commands/ingest-ethereum-etl.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils.crypto import keccak

TRANSFER_TOPIC = keccak(text="Transfer(address,address,uint256)")
TRANSFER_TOPIC_HEX = "0x" + TRANSFER_TOPIC.hex()
UINT256_MAX = 2**256 - 1


@dataclass(frozen=True)
class TokenTransfer:
    contract: bytes  # 20 bytes
    sender: bytes  # 20 bytes
    recipient: bytes  # 20 bytes
    amount: int


def _word(hex_text: str) -> bytes | None:
    s = hex_text[2:] if hex_text[:2] in ("0x", "0X") else hex_text
    try:
        b = bytes.fromhex(s)
    except ValueError:
        return None
    return b if len(b) == 32 else None


def decode_transfer(contract: bytes, topics: list[str], data: str) -> TokenTransfer | None:
    """The token transfer a log records, or None when the log is not a 3-topic ERC-20 Transfer.
    Raises ValueError when a log claims to be one but its topics or data do not parse."""
    if len(topics) != 3 or topics[0].lower() != TRANSFER_TOPIC_HEX:
        return None
    sender, recipient, amount = _word(topics[1]), _word(topics[2]), _word(data)
    if sender is None or recipient is None or amount is None:
        raise ValueError("Transfer log with malformed topics or data (expected 32-byte words)")
    if any(sender[:12]) or any(recipient[:12]):
        raise ValueError("Transfer log whose address topic has non-zero high bytes")
    return TokenTransfer(contract, sender[12:], recipient[12:], int.from_bytes(amount, "big"))
