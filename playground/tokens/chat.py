"""Chat Completions prompts as tokens: the per-message framing, encode_chat, count_chat_tokens.

A request's prompt is more than its messages' text: each message is wrapped in framing
tokens, and prompt caching compares those token prefixes, so both the count and the ids
matter (see :class:`ChatFraming`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import tiktoken

from .files import get_encoding
from .models import encoding_name_for_model


@dataclass(frozen=True)
class ChatFraming:
    """How a chat message is wrapped in tokens. Each message becomes::

        start  role  [name_sep name]  sep  content  end

    and the request ends with the reply primer ``start "assistant" sep``. That is the
    accounting of OpenAI's cookbook ("How to count tokens with tiktoken",
    ``num_tokens_from_messages``) for every current chat model: **3 tokens per message**
    (start, sep, end) **+ the role's tokens + the content's tokens, +1 + the name's tokens when
    a message has ``name``, + 3 for the reply primer** (``<|im_start|>assistant<|im_sep|>``).
    The cookbook checked this against the API (6-message example: 124 prompt tokens for
    gpt-4o/gpt-4o-mini, 129 for gpt-4/gpt-3.5-turbo), and tests/tokens reproduces both.

    The ids of start/sep/end (``<|im_start|>``, ``<|im_sep|>``, ``<|im_end|>`` = 200264-200266
    in o200k, 100264-100266 in cl100k) are the values the community uses (dqbd/tiktokenizer);
    OpenAI does not publish them. They are outside the public vocabulary, so they never collide
    with text tokens; which exact id they have does not change counts or prefix comparisons.

    Close, not exact: the server may add tokens this does not model -- tool definitions
    (``tools``), structured-output schemas, images (image parts are not counted), the
    reasoning models' hidden system preamble, and the separator rendering for ``name`` is a
    guess (only its count, 1 token, is documented). Retired gpt-3.5-turbo-0301 used 4 tokens
    per message / -1 per name and is not special-cased. For gpt-oss (o200k_harmony) the
    harmony tokens are used in the same layout; a local server's chat template adds its own
    system preamble on top.
    """

    encoding_name: str
    start: str
    sep: str
    end: str
    start_id: int
    sep_id: int
    end_id: int
    name_sep: str = ":"

    @property
    def special_tokens(self) -> dict[str, int]:
        return {self.start: self.start_id, self.sep: self.sep_id, self.end: self.end_id}


_FRAMINGS: dict[str, ChatFraming] = {
    "o200k_base": ChatFraming("o200k_base", "<|im_start|>", "<|im_sep|>", "<|im_end|>", 200264, 200266, 200265),
    "cl100k_base": ChatFraming("cl100k_base", "<|im_start|>", "<|im_sep|>", "<|im_end|>", 100264, 100266, 100265),
    "o200k_harmony": ChatFraming("o200k_harmony", "<|start|>", "<|message|>", "<|end|>", 200006, 200008, 200007),
}


def chat_framing(encoding_name: str) -> ChatFraming:
    """The :class:`ChatFraming` used for ``encoding_name``."""
    try:
        return _FRAMINGS[encoding_name]
    except KeyError:
        raise KeyError(f"no chat framing for encoding {encoding_name!r}") from None


@functools.lru_cache(maxsize=None)
def get_chat_encoding(name: str) -> tiktoken.Encoding:
    """``get_encoding(name)`` plus the chat framing tokens as special tokens.

    Useful to display a request's tokens: ``get_chat_encoding(n).decode(encode_chat(...))``.
    """
    base = get_encoding(name)
    framing = chat_framing(name)
    specials = {**base._special_tokens, **framing.special_tokens}
    return tiktoken.Encoding(
        name=f"{name}_chat",
        pat_str=base._pat_str,
        mergeable_ranks=base._mergeable_ranks,
        special_tokens=specials,
    )


def _content_texts(content: Any) -> Iterable[str]:
    """The text pieces of a message's ``content``: a string, None, or a list of parts."""
    if content is None:
        return
    if isinstance(content, str):
        yield content
        return
    if isinstance(content, Iterable):
        for part in content:
            if isinstance(part, str):
                yield part
            elif isinstance(part, Mapping):
                # {"type": "text"|"input_text"|"output_text", "text": ...}; also "refusal".
                # Image/audio/file parts carry no text and are not counted.
                for key in ("text", "refusal"):
                    value = part.get(key)
                    if isinstance(value, str):
                        yield value
        return
    raise TypeError(f"unsupported message content: {type(content).__name__}")


def _tool_call_texts(tool_calls: Any) -> Iterable[str]:
    """Function names and JSON arguments of an assistant message's ``tool_calls`` (approximate)."""
    for call in tool_calls or ():
        if not isinstance(call, Mapping):
            continue
        fn = call.get("function")
        if isinstance(fn, Mapping):
            for key in ("name", "arguments"):
                value = fn.get(key)
                if isinstance(value, str):
                    yield value


def encode_chat(messages: list[Mapping[str, Any]], model: str) -> list[int]:
    """The token ids of a Chat Completions prompt, framing included (see :class:`ChatFraming`).

    ``messages`` are Chat Completions message dicts (``role``, ``content`` as a string, None or
    a list of parts, optional ``name``, ``tool_calls``). Message text is encoded as plain text:
    a literal ``<|endoftext|>`` typed by a user is not a special token. ``len(result)`` is
    :func:`count_chat_tokens`. Equal message prefixes give equal token prefixes, which is what
    prompt caching compares.
    """
    name = encoding_name_for_model(model)
    enc = get_encoding(name)
    framing = chat_framing(name)
    encode = enc.encode_ordinary
    tokens: list[int] = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise TypeError(f"chat message must be a mapping, got {type(message).__name__}")
        tokens.append(framing.start_id)
        tokens += encode(str(message.get("role", "")))
        msg_name = message.get("name")
        if msg_name:
            tokens += encode(framing.name_sep)
            tokens += encode(str(msg_name))
        tokens.append(framing.sep_id)
        for text in _content_texts(message.get("content")):
            tokens += encode(text)
        for text in _tool_call_texts(message.get("tool_calls")):
            tokens += encode(text)
        tokens.append(framing.end_id)
    # Reply primer: the prompt ends by opening the assistant's message.
    tokens.append(framing.start_id)
    tokens += encode("assistant")
    tokens.append(framing.sep_id)
    return tokens


def count_chat_tokens(messages: list[Mapping[str, Any]], model: str) -> int:
    """Estimated ``usage.prompt_tokens`` of a Chat Completions request (``len(encode_chat(...))``).

    Close, not exact -- see :class:`ChatFraming` for what is and is not counted.
    """
    return len(encode_chat(messages, model))
