"""The behaviour of a loaded endpoint: its output generated from its Output schema, files and all.

This is the queue's :class:`~emulator.core.outputs.Behaviour` for every endpoint outside the LLM
categories (the LLM endpoints, any-llm and openrouter/router among them, get the generated text
of ``emulator.core.outputs``). The
files an output names are rendered, kept in the emulator's storage under a key made from their
bytes (the same render is kept once), and handed out on the CDN surface the caller reached.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from functools import partial
from typing import Any

from emulator.core.fixture_files import Outcome
from emulator.core.images import ImageUrlCheck
from emulator.core.models import JSON, Failure, Plan
from emulator.core.outputs import Answer
from emulator.core.storage import Storage
from emulator.endpoints.categories import billable_units, make_plan
from emulator.endpoints.documents import EndpointDocument
from emulator.endpoints.generate import OutputGenerator
from emulator.endpoints.inputs import FileInputCheck, FilePolicy
from emulator.endpoints.registry import EndpointRegistry

__all__ = ["GeneratedOutputs", "InputFiles"]

# Generated files share one folder of the storage; a key is the first bytes of the file's digest.
_GENERATED = "generated"
_PREPARED_KEPT = 64


class GeneratedOutputs:
    """Answers for the loaded endpoints that are not LLMs: generated (or fixture-given) JSON outputs."""

    def __init__(self, registry: EndpointRegistry, files: Storage, *, seed: int | None, default_files_url: str) -> None:
        self.registry = registry
        self.files = files
        self.generator = OutputGenerator(seed)
        # For a request whose answer is made without a caller (restored after a restart, claimed).
        self.default_files_url = default_files_url.rstrip("/")
        # Outputs made ahead in a worker thread (``prepare``), taken by ``answer``; a few at most,
        # since each is taken by the submit that made it right after.
        self._prepared: dict[str, JSON] = {}
        self._lock = threading.Lock()

    def behaviour_for(self, endpoint: str) -> GeneratedOutputs | None:
        """This behaviour for a loaded endpoint outside the LLM categories; None for any other."""
        found = self.registry.get(endpoint)
        return self if found is not None and not found.category.is_llm else None

    def answer(
        self, endpoint: str, inputs: Mapping[str, Any], outcome: Outcome | None, files_url: str | None
    ) -> Answer:
        """The output for an input: the fixture's JSON output or error when given, else generated."""
        loaded = self.registry.get(endpoint)
        assert loaded is not None, f"{endpoint} is not loaded"
        document = loaded.document
        planner = partial(_plan, document, dict(inputs))
        if outcome is not None and outcome.error is not None:
            return Answer("", failure=outcome.error, planner=planner)
        if outcome is not None and isinstance(outcome.output, dict):
            data = outcome.output
        else:
            base = (files_url or self.default_files_url).rstrip("/")
            key = _key(endpoint, inputs, base)
            with self._lock:
                found = self._prepared.pop(key, None) if key is not None else None
            data = found if found is not None else self._generate(document, inputs, base)
        units = billable_units(loaded.category, inputs, document.input_defaults)
        return Answer("", data=data, units=units, planner=planner)

    def prepare(self, endpoint: str, inputs: Mapping[str, Any], files_url: str | None) -> None:
        """Generate the output (rendering and storing its files) ahead, for ``answer`` to take."""
        loaded = self.registry.get(endpoint)
        base = (files_url or self.default_files_url).rstrip("/")
        key = _key(endpoint, inputs, base)
        if loaded is None or key is None:
            return
        data = self._generate(loaded.document, inputs, base)
        with self._lock:
            if len(self._prepared) >= _PREPARED_KEPT:
                del self._prepared[next(iter(self._prepared))]  # oldest first
            self._prepared[key] = data

    def _generate(self, document: EndpointDocument, inputs: Mapping[str, Any], base: str) -> JSON:
        return self.generator.generate(document, inputs, partial(self._store, base))

    def _store(self, base: str, data: bytes, content_type: str, file_name: str) -> str:
        extension = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else "bin"
        key = f"{_GENERATED}/{hashlib.sha256(data).hexdigest()[:32]}.{extension}"
        url = f"{base}/files/{key}"
        self.files.put(key, data, content_type, file_name, url)
        return url


def _key(endpoint: str, inputs: Mapping[str, Any], base: str) -> str | None:
    try:
        return json.dumps([endpoint, base, inputs], sort_keys=True)
    except (TypeError, ValueError):
        return None


def _plan(document: EndpointDocument, inputs: Mapping[str, Any], answer: Answer, profile: str) -> Plan:
    failure: Failure | None = answer.failure
    return make_plan(
        document,
        inputs,
        answer.output() if failure is None else {},
        profile=profile,
        failure=failure,
        timing=answer.timing,
        logs=answer.logs,
        lost_after=answer.lost_after,
    )


class InputFiles:
    """The run-time check of an input's files: an endpoint's file fields, or an LLM's ``image_urls``."""

    def __init__(
        self, registry: EndpointRegistry, files: Storage, own_hosts: list[str], policy: str = "offline"
    ) -> None:
        self.registry = registry
        self.endpoint_files = FileInputCheck(files, policy=FilePolicy(policy), own_hosts=own_hosts)
        self.image_urls = ImageUrlCheck(files, own_hosts)

    def __call__(self, endpoint: str, inputs: Mapping[str, Any]) -> Failure | None:
        found = self.registry.get(endpoint)
        if found is not None and not found.category.is_llm:
            return self.endpoint_files(endpoint, inputs)
        return self.image_urls(endpoint, inputs)
