"""Deterministic reply text, split into the output tokens that get streamed.

The same request always gets the same reply, so tests can assert on it. Each output
"token" is one whitespace-led word (or a number in ``numbered`` mode); it is also one
stream chunk, and ``completion_tokens`` counts them.

Modes:

* ``prose``: short Markdown that says it is simulated, quotes the start of the last
  user message, and holds bold text, a bullet list and a fenced code block, so
  Markdown rendering gets exercised; padded with filler sentences to the length.
* ``numbered``: `` 1``, `` 2``, `` 3`` ... so a benchmark can detect lost,
  duplicated or reordered chunks.
* ``echo``: the last user message, word by word (its own length, cut by the max).
"""

import re
import zlib

REPLY_MODES = ("prose", "numbered", "echo")

_WORD = re.compile(r"\s*\S+")
_QUOTED_WORDS = 8
_FILLER = (
    "Prompt caching rewards prompts that keep their stable parts first.",
    "A repeated prefix of 1024 tokens or more can be served from the cache.",
    "Cached tokens arrive in steps of 128 once the prefix is long enough.",
    "A prompt_cache_key keeps related requests on the same cache machine.",
    "Idle cache entries expire after a few minutes unless retention is extended.",
    "Too many requests for one prefix spill over to machines that start cold.",
)


def count_tokens(text: str) -> int:
    """How many of this simulator's output tokens `text` holds (one per whitespace-led word)."""
    return len(_WORD.findall(text))


def reply_tokens(mode: str, *, length: int, last_user_text: str, model: str, prompt_tokens: int) -> list[str]:
    """Return the reply's output tokens: ``length`` of them, or fewer in ``echo`` mode."""
    if mode == "numbered":
        return [f" {number}" for number in range(1, length + 1)]
    if mode == "echo":
        return _WORD.findall(last_user_text)[:length]
    return _prose(last_user_text, model, prompt_tokens, length)


def _prose(last_user_text: str, model: str, prompt_tokens: int, length: int) -> list[str]:
    words = last_user_text.split()
    quote = " ".join(words[:_QUOTED_WORDS]) + (" …" if len(words) > _QUOTED_WORDS else "")
    text = (
        f"This is a **simulated reply** from the OpenAI-wire simulator ({model}); no model was called.\n\n"
        f"> {quote or '(empty message)'}\n\n"
        f"- The same request always gets this same reply.\n"
        f"- Your prompt was {prompt_tokens} tokens.\n\n"
        f"```python\nprint(\"hello from the simulator\")\n```\n\n"
    )
    count = len(_WORD.findall(text))
    start = zlib.crc32(last_user_text.encode())
    index = 0
    while count < length:
        sentence = _FILLER[(start + index) % len(_FILLER)]
        text += sentence + " "
        count += len(sentence.split())
        index += 1
    return _WORD.findall(text)[:length]
