"""Token counts and prices for the openrouter/router family: what an answer's ``usage`` says.

The counts come from a tokenizer-like split, not a model's tokenizer: every run of word
characters is one token and every other non-space character is one more
(``\\w+|[^\\w\\s]``). That is deterministic, cheap, and near enough to real counts for a
client's budgeting code to see plausible numbers. ``cost`` is those counts priced with the
table below (USD per million tokens, input and output), rounded to nanodollars.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["DEFAULT_PRICE", "PRICES", "count_tokens", "price_of", "usage"]

_TOKEN = re.compile(r"\w+|[^\w\s]")

# USD per million tokens (input, output): OpenRouter's public list prices for the names fal
# shows in its examples, late 2025. A figure to budget against, not a bill.
PRICES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "anthropic/claude-sonnet-4.5": (3.0, 15.0),
        "anthropic/claude-haiku-4.5": (1.0, 5.0),
        "anthropic/claude-3.7-sonnet": (3.0, 15.0),
        "anthropic/claude-3.5-sonnet": (3.0, 15.0),
        "anthropic/claude-3-5-haiku": (0.8, 4.0),
        "anthropic/claude-3-haiku": (0.25, 1.25),
        "google/gemini-2.5-pro": (1.25, 10.0),
        "google/gemini-2.5-flash": (0.3, 2.5),
        "google/gemini-2.5-flash-lite": (0.1, 0.4),
        "google/gemini-2.0-flash-001": (0.1, 0.4),
        "openai/gpt-4o": (2.5, 10.0),
        "openai/gpt-4o-mini": (0.15, 0.6),
        "openai/gpt-4.1": (2.0, 8.0),
        "openai/gpt-5-chat": (1.25, 10.0),
        "openai/gpt-5-mini": (0.25, 2.0),
        "openai/gpt-5-nano": (0.05, 0.4),
        "openai/o3": (2.0, 8.0),
        "openai/gpt-oss-120b": (0.1, 0.5),
        "meta-llama/llama-4-maverick": (0.15, 0.6),
        "meta-llama/llama-4-scout": (0.08, 0.3),
        "meta-llama/llama-3.1-8b-instruct": (0.02, 0.03),
        "meta-llama/llama-3.1-70b-instruct": (0.1, 0.28),
        "deepseek/deepseek-r1": (0.4, 2.0),
        "deepseek/deepseek-v3.1-terminus": (0.23, 0.9),
        "moonshotai/kimi-k2.5": (0.5, 2.5),
    }
)
# Any model the table does not name.
DEFAULT_PRICE = (1.0, 3.0)


def count_tokens(text: str | None) -> int:
    """Tokens in a text: each word-character run and each other non-space character counts one."""
    return len(_TOKEN.findall(text)) if text else 0


def price_of(model: Any) -> tuple[float, float]:
    """USD per million (input, output) tokens of a model (the default for a name without a price)."""
    return PRICES.get(model, DEFAULT_PRICE) if isinstance(model, str) else DEFAULT_PRICE


def usage(model: Any, prompt: str, completion: str, *, price: tuple[float, float] | None = None) -> dict[str, Any]:
    """``{prompt_tokens, completion_tokens, total_tokens, cost}`` of one exchange."""
    prompt_tokens = count_tokens(prompt)
    completion_tokens = count_tokens(completion)
    per_input, per_output = price or price_of(model)
    cost = round((prompt_tokens * per_input + completion_tokens * per_output) / 1_000_000, 9)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cost": cost,
    }
