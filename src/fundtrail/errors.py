"""The one exception tree.

Every error a user can cause or fix is a :class:`FundtrailError`. Its message is one line that names the
problem and the fix; the CLI prints it without a traceback (``--debug`` shows one) and exits non-zero.
Anything else escaping the library is a bug.
"""

from __future__ import annotations


class FundtrailError(Exception):
    """Base of every error fundtrail reports to a user."""

    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.problem}: {self.fix}" if self.fix else self.problem


class InvalidInput(FundtrailError):
    """A value given by the user (address, txid, height, option) does not parse."""

    exit_code = 2


class NotFound(FundtrailError):
    """The thing asked for is not in the store."""

    exit_code = 3


class CorruptData(FundtrailError):
    """Input data (a block file, an RPC answer) is malformed or fails an integrity check."""

    exit_code = 4


class BlockRejected(CorruptData):
    """A block failed decoding or an integrity check (merkle root, witness commitment, proof of work)."""

    def __init__(self, block_hash: str | None, problem: str, fix: str | None = None) -> None:
        self.block_hash = block_hash
        self.index: int | None = None  # position of the block in the decoded batch, when known
        where = f"block {block_hash}" if block_hash else "block"
        super().__init__(f"{where} rejected: {problem}", fix)


class SourceUnavailable(FundtrailError):
    """A node or service could not be reached, or refused us (credentials)."""

    exit_code = 5


class StoreError(FundtrailError):
    """The store cannot be opened or used (locked, newer schema, not a fundtrail store)."""

    exit_code = 6


class PermissionDenied(FundtrailError):
    """The caller is known but may not do this: their role lacks the permission, or a case is shared with
    their organisation read-only, or a package is signed by a key this installation does not trust."""

    exit_code = 7


class Unauthenticated(FundtrailError):
    """No valid credentials: an unknown, malformed or revoked API key (the API answers 401)."""

    exit_code = 8
