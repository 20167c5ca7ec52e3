"""Render a request into the prompt token sequence the cache compares.

OpenAI caches the *rendered* prompt, framing included, so the simulator renders one
too. The framing rule (documented because clients estimate counts from it):

* every message costs its content tokens plus 4 framing tokens:
  ``<start> <role> <sep> ...content... <end>``;
* the reply primer ``<start> assistant <sep>`` adds 3 tokens at the end;
* a ``tools`` list, when sent, is rendered first as one more framed message holding
  its canonical JSON, so changing the tools changes the whole prefix (as upstream);
* non-text content parts (images, files) are rendered as their canonical JSON, so a
  different image or ``detail`` changes the prefix too.

Because the primer equals the framing that opens the next assistant message, a
follow-up turn shares the whole previous prompt as its prefix, as it does upstream.
"""

import json

from .tokenizer import VOCAB_SIZE, encode

MESSAGE_FRAMING = 4
REPLY_PRIMER = 3

_START, _SEP, _END = VOCAB_SIZE, VOCAB_SIZE + 1, VOCAB_SIZE + 2
_ROLE_IDS = {
    role: VOCAB_SIZE + 10 + index
    for index, role in enumerate(("system", "developer", "user", "assistant", "tool", "function", "tools"))
}
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def chat_prompt(messages: list[dict], tools: list | None) -> list[int]:
    """Tokens of a Chat Completions request (messages already validated)."""
    tokens = _tools_tokens(tools)
    for message in messages:
        tokens += _framed(message["role"], content_text(message.get("content")))
    return tokens + [_START, _ROLE_IDS["assistant"], _SEP]


def responses_prompt(instructions: str | None, items: list[dict], tools: list | None) -> list[int]:
    """Tokens of a Responses request; ``instructions`` act as a leading developer message."""
    tokens = _tools_tokens(tools)
    if instructions:
        tokens += _framed("developer", instructions)
    for item in items:
        if "role" in item:
            tokens += _framed(item["role"], content_text(item.get("content")))
        else:  # function calls, their outputs and other non-message items
            tokens += _framed("tool", _canonical(item))
    return tokens + [_START, _ROLE_IDS["assistant"], _SEP]


def content_text(content: object) -> str:
    """The text of a message's content: a string, a list of parts, or None."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            pieces.append(part["text"])
        else:
            pieces.append(_canonical(part))
    return "".join(pieces)


def _framed(role: str, text: str) -> list[int]:
    return [_START, _ROLE_IDS.get(role, _ROLE_IDS["user"]), _SEP, *encode(text), _END]


def _tools_tokens(tools: list | None) -> list[int]:
    return _framed("tools", _canonical(tools)) if tools else []


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
