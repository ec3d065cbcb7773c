"""fal's OpenAI-compatible surface of openrouter/router: chat completions, responses, embeddings.

No HTTP here: a route hands over the caller's namespace and the raw body, and gets a
``Reply`` (or a ``Problem``) back. The text comes from the same ``Outputs`` as the native
endpoints (fixtures match on the last user message as ``prompt``, the system messages as
``system_prompt``, and ``model``); timing follows the emulator's profile; fault rules with
the ``openai`` action apply. Upstream-style failures answer in OpenAI's
``{"error": {...}}`` shape, a body that breaks the request's rules in fal's 422 shape.

``requests`` parses and checks the bodies, ``schemas`` writes JSON for a response format's
schema, ``answers`` writes the outputs (a request record's answer, on the queue as on the run
surface), ``surface`` answers the run surface's calls (import it from its module: it builds on
``emulator.core.service``, which builds on ``answers``).
"""

from emulator.core.openai_compat.answers import ENDPOINTS, OpenAIDialect, embedding
from emulator.core.openai_compat.requests import BASE_PATH, EMBEDDING_DIMENSIONS, OPENAI_ACTION, parse_chat
from emulator.core.openai_compat.schemas import instance_from_schema

__all__ = [
    "BASE_PATH",
    "EMBEDDING_DIMENSIONS",
    "ENDPOINTS",
    "OPENAI_ACTION",
    "OpenAIDialect",
    "embedding",
    "instance_from_schema",
    "parse_chat",
]
