"""Deterministic stand-in tokenizer for the simulator.

The cache model only needs token *sequences* that behave like GPT's: the same text
always gives the same ids, a shared text prefix gives a shared id prefix, and the
count is in the right ballpark (about one token per short word, number group or
punctuation run). Real BPE is not needed for that, and it would need a downloaded
vocabulary, which newcomers without internet do not have.

Everything goes through :func:`encode`, so a real offline o200k tokenizer can be
swapped in by replacing that one function.
"""

import re
import zlib

# Pieces in the spirit of GPT's pre-tokenizer: contractions, CJK in pairs of
# characters, words with their leading space (long words split every 10 letters, as
# BPE splits rare words), numbers in groups of up to three digits, punctuation runs,
# and whitespace.
_PIECE = re.compile(
    r"""'(?:[sdmt]|ll|ve|re)"""
    r"""|[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]{1,2}"""
    r"""| ?[^\W\d_]{1,10}| ?\d{1,3}| ?[^\s\w]+|_+|\s+(?!\S)|\s+"""
)

# Ordinary token ids live below this bound; ids at or above it are free for special
# (framing) tokens, like o200k's vocabulary of about 200,000 entries.
VOCAB_SIZE = 200_000


def encode(text: str) -> list[int]:
    """Return the token ids of ``text``; crc32 keeps ids stable across processes."""
    return [zlib.crc32(piece.encode()) % VOCAB_SIZE for piece in _PIECE.findall(text)]


def count(text: str) -> int:
    """Return how many tokens ``text`` encodes to."""
    return len(encode(text))
