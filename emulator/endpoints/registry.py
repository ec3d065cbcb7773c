"""Every endpoint by id, built-in or loaded: its document, input validator and category, replaceable at run time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from emulator.core.models import JSON
from emulator.endpoints.categories import Category, category_for
from emulator.endpoints.documents import EndpointDocument, combined_document, served_document
from emulator.endpoints.inputs import InputValidator

__all__ = ["Endpoint", "EndpointRegistry"]


@dataclass(frozen=True)
class Endpoint:
    """One loaded endpoint: its document, its compiled input check and its category's behaviour."""

    document: EndpointDocument
    validator: InputValidator = field(repr=False)
    category: Category

    @classmethod
    def of(cls, document: EndpointDocument) -> Endpoint:
        return cls(document, InputValidator(document), category_for(document))

    @property
    def endpoint_id(self) -> str:
        return self.document.endpoint_id


class EndpointRegistry:
    """Endpoints by id; adding a document for a known id replaces that endpoint."""

    def __init__(self, documents: Iterable[EndpointDocument] = ()) -> None:
        self._endpoints: dict[str, Endpoint] = {}
        # (id of base, servers) → (base, document); holding the base keeps its id from being reused.
        self._combined: dict[tuple[int, str | None], tuple[JSON | None, JSON]] = {}
        for document in documents:
            self.add(document)

    def add(self, document: EndpointDocument) -> Endpoint:
        """Load (or replace) an endpoint; it answers at once."""
        endpoint = Endpoint.of(document)
        self._endpoints[document.endpoint_id] = endpoint
        self._combined.clear()
        return endpoint

    def remove(self, endpoint_id: str) -> bool:
        """Forget an endpoint; whether it was loaded."""
        removed = self._endpoints.pop(endpoint_id, None) is not None
        if removed:
            self._combined.clear()
        return removed

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._endpoints.get(endpoint_id.strip("/"))

    def for_app(self, app_id: str) -> list[Endpoint]:
        """The endpoints under an ``owner/alias`` (status, result and cancel URLs name only that)."""
        return [e for e in self._endpoints.values() if e.document.app_id == app_id]

    def __contains__(self, endpoint_id: object) -> bool:
        return isinstance(endpoint_id, str) and endpoint_id.strip("/") in self._endpoints

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(list(self._endpoints.values()))

    def __len__(self) -> int:
        return len(self._endpoints)

    @property
    def endpoint_ids(self) -> frozenset[str]:
        return frozenset(self._endpoints)

    def served(self, endpoint_id: str, *, servers: list[JSON] | None = None) -> JSON | None:
        """One endpoint's document as fal serves it; None for an unknown id."""
        endpoint = self.get(endpoint_id)
        return None if endpoint is None else served_document(endpoint.document, servers=servers)

    def combined(self, *, base: JSON | None = None, servers: list[JSON] | None = None) -> JSON:
        """The combined document of every endpoint (on ``base``), built once until the next change.

        The cache is keyed by the identity of ``base``: pass the same, unchanging base object each time.
        """
        key = (id(base), repr(servers) if servers is not None else None)
        cached = self._combined.get(key)
        if cached is not None:
            return cached[1]
        docs = [e.document for e in self._endpoints.values()]
        found = combined_document(docs, base=base, servers=servers)
        # A handful of (base, servers) pairs at most; the bound only guards against misuse.
        if len(self._combined) >= 8:
            self._combined.clear()
        self._combined[key] = (base, found)
        return found
