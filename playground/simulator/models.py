"""The models the simulator serves and the per-model rules that differ upstream.

Real OpenAI model names are used so that everything downstream (pricing, model
pickers) works unchanged against the simulator. Each entry captures only what
changes the wire behaviour: context window, reasoning, which cache-retention values
the model takes, whether it bills cache writes and takes ``prompt_cache_options``.
"""

from dataclasses import dataclass

IN_MEMORY = "in_memory"
EXTENDED = "24h"


@dataclass(frozen=True)
class ModelSpec:
    """One model as the simulator serves it."""

    id: str
    # The dated snapshot a request is resolved to and reported back in ``model``
    # (OpenAI answers "gpt-4o-mini-2024-07-18" to a request for "gpt-4o-mini").
    snapshot: str
    context_window: int
    created: int
    reasoning: bool = False
    # Effort used when the request names none (gpt-5.1 defaults to no reasoning).
    default_effort: str | None = None
    bills_cache_writes: bool = False
    retention: tuple[str, ...] = (IN_MEMORY, EXTENDED)
    accepts_cache_options: bool = False

    @property
    def default_retention(self) -> str:
        """In-memory where the model allows it (what a ZDR organization gets), else 24h."""
        return IN_MEMORY if IN_MEMORY in self.retention else self.retention[0]


_MODELS = (
    ModelSpec("gpt-4o-mini", "gpt-4o-mini-2024-07-18", 128_000, 1721172741, retention=(IN_MEMORY,)),
    ModelSpec("gpt-4o", "gpt-4o-2024-08-06", 128_000, 1715367049, retention=(IN_MEMORY,)),
    ModelSpec("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", 1_047_576, 1744318173),
    ModelSpec("gpt-4.1-nano", "gpt-4.1-nano-2025-04-14", 1_047_576, 1744321707),
    ModelSpec("gpt-5-mini", "gpt-5-mini-2025-08-07", 400_000, 1754425928, reasoning=True, default_effort="medium"),
    ModelSpec("gpt-5-nano", "gpt-5-nano-2025-08-07", 400_000, 1754426384, reasoning=True, default_effort="medium"),
    ModelSpec("gpt-5.1", "gpt-5.1-2025-11-13", 400_000, 1762800673, reasoning=True, default_effort="none"),
    ModelSpec(
        "gpt-5.5", "gpt-5.5", 1_050_000, 1776000000, reasoning=True, default_effort="medium", retention=(EXTENDED,)
    ),
    ModelSpec(
        "gpt-5.6-terra",
        "gpt-5.6-terra",
        1_050_000,
        1790000000,
        reasoning=True,
        default_effort="medium",
        bills_cache_writes=True,
        retention=(EXTENDED,),
        accepts_cache_options=True,
    ),
    ModelSpec("o4-mini", "o4-mini-2025-04-16", 200_000, 1744225351, reasoning=True, default_effort="medium"),
)

_BY_NAME = {name: spec for spec in _MODELS for name in (spec.id, spec.snapshot)}


def resolve(name: str) -> ModelSpec | None:
    """Return the model for an alias or dated snapshot name, or None if unknown."""
    return _BY_NAME.get(name)


def listing() -> list[dict]:
    """Every servable name (aliases and snapshots) as OpenAI ``model`` objects."""
    return [model_object(name) for name in _BY_NAME]


def model_object(name: str) -> dict:
    """One name as OpenAI's ``GET /v1/models/{id}`` shows it."""
    return {"id": name, "object": "model", "created": _BY_NAME[name].created, "owned_by": "system"}
