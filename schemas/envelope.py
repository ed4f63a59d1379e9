"""CloudEvents 1.0 attributes as Flowline uses them (the conversion lives in services.common).

Emitted in Kafka binary mode: attributes as `ce_*` headers, the data as JSON in the value.
Accepted in binary or structured mode (`content-type: application/cloudevents+json`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SPEC_VERSION = "1.0"
DATA_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


class Envelope(BaseModel):
    """The CloudEvents context attributes of one record."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: str
    source: str
    type: str
    specversion: str = SPEC_VERSION
    time: str | None = None
    subject: str | None = None
    datacontenttype: str | None = DATA_CONTENT_TYPE
