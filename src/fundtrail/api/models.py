"""Request bodies, parsed strictly at the edge: unknown fields are refused, strings are bounded, numbers
are integers where the library wants integers (amounts are exact: a JSON integer of any size, never a
float). What the library checks itself (address formats, categories, seeds) it still checks; the route
names the field when it refuses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

Text = Annotated[str, Field(min_length=1, max_length=200)]
CHAIN_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
Chain = Annotated[str, Field(min_length=1, max_length=40, pattern=CHAIN_PATTERN)]
Item = Annotated[str, Field(min_length=1, max_length=200)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ScreenRequest(StrictModel):
    """One item (``item``: an address or a txid) or a batch (``items``), on one chain."""

    chain: Chain = "bitcoin"
    item: Item | None = None
    items: list[Item] | None = None
    asset: Annotated[str | None, Field(max_length=100)] = None


class TraceBody(StrictModel):
    """The options of ``fundtrail trace``, by the same names (``from`` is ``seed`` here)."""

    seed: Text
    chain: Chain = "bitcoin"
    direction: Literal["forward", "backward"] = "forward"
    policy: Literal["haircut", "poison", "fifo", "lifo", "tiho"] = "haircut"
    hops: Annotated[StrictInt, Field(ge=0)] = 10
    min_amount: Annotated[StrictInt, Field(ge=0)] = 0
    until: Annotated[str | StrictInt | None, Field(union_mode="left_to_right")] = None
    since: Annotated[str | StrictInt | None, Field(union_mode="left_to_right")] = None
    start: Annotated[str | StrictInt | None, Field(union_mode="left_to_right")] = None
    amount: Annotated[StrictInt | None, Field(gt=0)] = None
    asset: Annotated[str | None, Field(max_length=100)] = None
    by: Literal["address", "cluster"] = "address"
    max_cluster_size: Annotated[StrictInt, Field(ge=1)] = 10_000


class LabelCreate(StrictModel):
    chain: Chain
    address: Item
    label: Text
    category: Annotated[str, Field(min_length=1, max_length=40)]
    confidence: Annotated[StrictInt | None, Field(ge=0, le=100)] = None
    source: Annotated[str, Field(min_length=1, max_length=100)] = "manual"
    context: dict[str, Any] | None = None
    definer: StrictBool = False


class LabelEdit(StrictModel):
    label: Text | None = None
    category: Annotated[str | None, Field(min_length=1, max_length=40)] = None
    confidence: Annotated[StrictInt | None, Field(ge=0, le=100)] = None
    context: dict[str, Any] | None = None
    definer: StrictBool | None = None


class UserCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    role: Annotated[str, Field(min_length=1, max_length=40)]


class RoleChange(StrictModel):
    role: Annotated[str, Field(min_length=1, max_length=40)]


class KeyCreate(StrictModel):
    user: Annotated[str, Field(min_length=1, max_length=64)]
    rate_limit: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 100


class CaseCreate(StrictModel):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str | None, Field(max_length=10_000)] = None


class Assignee(StrictModel):
    user: Annotated[str, Field(min_length=1, max_length=64, description="User name or id.")]


class StatusChange(StrictModel):
    status: Annotated[
        str, Field(min_length=1, max_length=20, description="open, in-progress, on-hold, closed")
    ]


class SubjectAdd(StrictModel):
    kind: Literal["address", "tx", "cluster"]
    chain: Chain
    value: Item
    note: Annotated[str | None, Field(max_length=10_000)] = None


class Attachment(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    content_base64: Annotated[str, Field(description="The file's bytes, base64 (standard alphabet).")]


class NoteAdd(StrictModel):
    text: Annotated[str, Field(min_length=1, max_length=100_000)]
    attachments: Annotated[list[Attachment], Field(max_length=20)] = []


class ShareChange(StrictModel):
    access: Annotated[Literal["read", "write"] | None, Field(description="null revokes the share")]


class ScreenSnapshot(StrictModel):
    chain: Chain = "bitcoin"
    items: Annotated[list[Item], Field(min_length=1, max_length=10_000)]
    asset: Annotated[str | None, Field(max_length=100)] = None
    title: Annotated[str | None, Field(max_length=200)] = None


class TraceSnapshot(TraceBody):
    title: Annotated[str | None, Field(max_length=200)] = None


class PrivateLabelCreate(StrictModel):
    chain: Chain
    address: Item
    category: Annotated[str, Field(min_length=1, max_length=40)]
    label: Annotated[str, Field(min_length=1, max_length=500)]


class PrivateLabelEdit(StrictModel):
    category: Annotated[str | None, Field(min_length=1, max_length=40)] = None
    label: Annotated[str | None, Field(min_length=1, max_length=500)] = None
