"""Sessions are conversation trees. Messages are nodes (each has a parent); a Branch is just a
pointer to a node, so forking copies nothing. A Turn is one upstream request (an attempt):
the settings it was sent with, the exact cache key, and the usage, timings and cost that came
back. A retry never deletes an attempt: the reply node keeps every attempt made for it
(`Message.attempts`), and shows the latest (`Message.turn`).
"""

from django.conf import settings
from django.db import models


class ChatSession(models.Model):
    class Api(models.TextChoices):
        CHAT = "chat", "Chat Completions"
        RESPONSES = "responses", "Responses"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions")
    title = models.CharField(max_length=120, default="New session")
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=100)
    api = models.CharField(max_length=16, choices=Api.choices, default=Api.CHAT)
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_effort = models.CharField(max_length=16, blank=True)
    cache_scope = models.CharField(max_length=24, default="session")
    extended_retention = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Deleted by its owner, still undoable: hidden everywhere, its replies stopped, its spend
    # still counted from its turns. Purged (rows deleted, spend carried into DeletedSpend)
    # once PLAYGROUND_SESSION_PURGE_SECONDS have passed (chat/services.py sessions_purge).
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.title


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        DONE = "done"
        PENDING = "pending"  # dispatched, no token yet
        STREAMING = "streaming"
        STOPPED = "stopped"  # the user stopped it; partial text kept
        INCOMPLETE = "incomplete"  # the stream broke; partial text kept
        FAILED = "failed"  # nothing usable came back

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    depth = models.PositiveIntegerField(default=0)
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DONE)
    # The branch this node was written on (forks and "which branch" explanations).
    branch = models.ForeignKey("Branch", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # A message that brought results back from other branches ("return to parent", "join").
    source_branch = models.ForeignKey("Branch", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source_fanout = models.ForeignKey("FanOut", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["session", "parent"]),
            # The session list's "last activity" (the newest message of each session).
            models.Index(fields=["session", "created_at"], name="message_activity"),
        ]

    @property
    def in_flight(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.STREAMING)


class Branch(models.Model):
    """A named pointer to a node of the tree; its path is root → head."""

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="branches")
    name = models.CharField(max_length=80)
    head = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    forked_from = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The branch that was open where this one was forked off: "return to parent" goes there.
    parent_branch = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    fanout = models.ForeignKey("FanOut", null=True, blank=True, on_delete=models.SET_NULL, related_name="branches")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.name


class Turn(models.Model):
    """One upstream request (an attempt) and what came back, for the assistant message it made.

    `reply` is the node every attempt was made for; `message` is set on its latest attempt
    only (a retry moves it to the new attempt), so `message.turn` is what the node shows and
    `message.attempts` is its whole history. Every attempt the provider billed counts in the
    money views, whichever is shown.
    """

    class Outcome(models.TextChoices):
        RUNNING = "", "running"
        OK = "ok", "ok"
        STOPPED = "stopped", "stopped"
        CUT = "cut", "cut"
        RATE_LIMITED = "rate_limited", "rate-limited"
        ERROR = "error", "error"

    message = models.OneToOneField(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="turn")
    reply = models.ForeignKey(Message, null=True, on_delete=models.CASCADE, related_name="attempts")
    attempt = models.PositiveSmallIntegerField(default=1)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING, blank=True)
    # The provider answered over HTTP (any status): the request is in its logs.
    reached = models.BooleanField(default=False)
    # The provider accepted the request and started the reply: its tokens are billed, whether
    # or not the stream ran to the end and reported usage.
    billed = models.BooleanField(default=False)
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="turns")
    branch = models.ForeignKey(Branch, null=True, blank=True, on_delete=models.SET_NULL, related_name="turns")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # What was sent (a snapshot: session settings can change later).
    provider = models.CharField(max_length=64)
    api = models.CharField(max_length=16)
    model = models.CharField(max_length=100)
    params = models.JSONField(default=dict, blank=True)
    key_ref = models.CharField(max_length=80, blank=True)
    cache_scope = models.CharField(max_length=24, blank=True)
    prompt_cache_key = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    stop_requested = models.BooleanField(default=False)
    # What came back.
    model_resolved = models.CharField(max_length=120, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    total_ms = models.PositiveIntegerField(null=True, blank=True)
    usage_reported = models.BooleanField(default=False)
    # No usage came back for a billed attempt (stopped, cut): the token columns hold the
    # app's estimate (local tokenizer on the request sent, the cache prediction, the text
    # received), priced like reported usage and flagged "estimated" wherever it is shown.
    usage_estimated = models.BooleanField(default=False)
    usage_missing = models.JSONField(default=list, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    cached_tokens = models.PositiveIntegerField(null=True, blank=True)
    cache_write_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    error_kind = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    retry_after = models.PositiveIntegerField(null=True, blank=True)
    # Cache insight (playground/chat/insight.py): hashes of the prompt's 128-token blocks and
    # messages (never text), the expected-vs-actual explanation, and hit/partial/miss for the tree.
    fingerprint = models.JSONField(null=True, blank=True)
    explanation = models.JSONField(null=True, blank=True)
    hit_class = models.CharField(max_length=8, blank=True)
    # llama.cpp only: what the request left in the server's slot (its prompt, then the reply
    # tokens kept) as a keyed hash chain, for the lab's token-exact replay (caching/llama_slot.py).
    llama_prefix = models.JSONField(null=True, blank=True)
    # Money, priced at requested_at (Decimal; null = price unknown).
    price_known = models.BooleanField(default=False)
    cost_actual = models.DecimalField(max_digits=20, decimal_places=12, null=True, blank=True)
    cost_uncached = models.DecimalField(max_digits=20, decimal_places=12, null=True, blank=True)
    # The worst case the budget check reserved at send time (prompt at list price, output at
    # max tokens): what a reply in flight, or a billed one left unpriced, counts against the
    # user's caps (chat/budgets.py). Null when no cap applied.
    cost_reserved = models.DecimalField(max_digits=20, decimal_places=12, null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["session", "created_at"]),
            models.Index(fields=["user", "provider", "created_at"], name="turn_spend"),  # budgets
        ]

    def earlier_attempts(self) -> list["Turn"]:
        """The attempts made for this turn's node before this one, oldest first (the page's
        "attempts" disclosure; only asked for when there are some)."""
        return list(
            Turn.objects.filter(reply_id=self.reply_id, attempt__lt=self.attempt)
            .defer("fingerprint", "explanation", "llama_prefix").order_by("attempt", "id")
        )

    @property
    def has_usage(self) -> bool:
        """Token figures to show and add up: reported, or estimated for a billed attempt."""
        return self.usage_reported or self.usage_estimated

    @property
    def cost(self):
        """This turn's money (priced when it finished) with the saving derived."""
        from playground.caching.pricing import TurnCost, stored_cost

        if not self.price_known:
            return TurnCost.unknown("usage not reported" if not self.has_usage else "price unknown")
        return stored_cost(actual=self.cost_actual, uncached=self.cost_uncached)


class FanOut(models.Model):
    """N child branches started at once from one message; `join` brings their answers back."""

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="fanouts")
    parent_branch = models.ForeignKey(Branch, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    origin = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    name = models.CharField(max_length=80)
    join = models.BooleanField(default=False)
    # Set once, by whichever caller claims the join first (a conditional UPDATE).
    joined_at = models.DateTimeField(null=True, blank=True)
    join_message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.name


class Budget(models.Model):
    """A user's spending caps for one provider's key, in dollars. A null cap means the
    operator's default (PLAYGROUND_BUDGET_*_DEFAULT); every cap is held under the operator's
    ceiling. The row is also the lock that serializes a user's sends while they are checked."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budgets")
    provider = models.CharField(max_length=64)
    daily_cap = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    monthly_cap = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "provider"], name="one_budget_per_user_provider")]

    def __str__(self) -> str:
        return f"{self.provider} budget of user {self.user_id}"


class DeletedSpend(models.Model):
    """What an attempt of a since-deleted session counts against its user's caps (its price,
    or its reservation), kept when the session goes (chat/budgets.py `carry_deleted`): deleting
    a conversation never gives its spend back."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    amount = models.DecimalField(max_digits=20, decimal_places=12)

    class Meta:
        indexes = [models.Index(fields=["user", "provider", "created_at"], name="deleted_spend")]
