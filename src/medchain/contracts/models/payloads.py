"""Typed payloads of the models contract, validated before any state read.

Ids a payload creates (a model id, a result id) carry their pattern; records,
studies and versions it refers to are looked up by the handler.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from medchain.contracts.models.model import MAX_VERSION
from medchain.contracts.payload import Payload, whole
from medchain.contracts.records.payloads import RECORD_ID, Sm3Digest

MODEL_ID = r"[a-z0-9][a-z0-9._-]{2,63}"
LICENCE = r"[A-Za-z0-9][A-Za-z0-9.+-]{0,63}"  # an SPDX id ("Apache-2.0", "LicenseRef-x")

ModelId = Annotated[str, msgspec.Meta(pattern=whole(MODEL_ID))]
Version = Annotated[int, msgspec.Meta(ge=1, le=MAX_VERSION)]


class RegisterModel(Payload, frozen=True, kw_only=True):
    """models.register: a published model file and its card, owned by the signer's
    organisation; `study_id` names the completed study it was trained in, if any."""

    model_id: ModelId
    version: Version
    model_hash: Sm3Digest
    card_hash: Sm3Digest
    licence: Annotated[str, msgspec.Meta(pattern=whole(LICENCE))]
    study_id: str | UnsetType = UNSET


class RegisterResult(Payload, frozen=True, kw_only=True):
    """models.register_result: the record `output_record_id` is what this model
    version computed from the record `input_record_id` (same patient)."""

    result_id: Annotated[str, msgspec.Meta(pattern=whole(RECORD_ID))]
    model_id: str
    version: Version
    input_record_id: str
    output_record_id: str
