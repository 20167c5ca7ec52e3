from django import forms
from django.conf import settings
from django.core.validators import RegexValidator

from playground.caching.keys import SCOPE_CHOICES
from playground.providers.registry import providers

from .models import ChatSession

EFFORTS = [("", "Model default"), ("minimal", "Minimal"), ("low", "Low"), ("medium", "Medium"), ("high", "High")]


def _provider_choices():
    return [(p.slug, p.label) for p in providers().values()]


class SessionSettingsForm(forms.ModelForm):
    """The settings drawer. Every field is bounded: out-of-range input is a form error."""

    title = forms.CharField(max_length=120)
    provider = forms.ChoiceField(choices=_provider_choices)
    model = forms.CharField(
        max_length=100,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$", "Letters, digits and . _ : / - only.")],
    )
    system_prompt = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 6}))
    temperature = forms.FloatField(required=False, min_value=0.0, max_value=2.0)
    max_output_tokens = forms.IntegerField(required=False, min_value=1, max_value=200_000)
    reasoning_effort = forms.ChoiceField(required=False, choices=EFFORTS)
    cache_scope = forms.ChoiceField(choices=SCOPE_CHOICES, label="Cache key scope")

    class Meta:
        model = ChatSession
        labels = {"api": "API flavor", "extended_retention": "Extended cache retention"}
        fields = [
            "title", "provider", "model", "api", "system_prompt", "temperature",
            "max_output_tokens", "reasoning_effort", "cache_scope", "extended_retention",
        ]

    def __init__(self, *args, catalog_of=None, models_url: str | None = None, **kwargs):
        """`catalog_of(slug, mode)` gives a provider's models (providers/catalog.py
        `model_catalog` for the acting user): the model field becomes a dropdown of the
        models the provider lists, and a model it does not list is refused on save.
        `models_url`: where the drawer re-asks for the list when the provider changes."""
        super().__init__(*args, **kwargs)
        self.catalog_of = catalog_of
        self.warning = ""
        slug = self.data.get("provider") if self.is_bound else self.initial.get("provider", self.instance.provider)
        self.catalog = catalog_of(slug, "cached") if catalog_of and slug in providers() else None
        self._model_choices()
        if models_url:
            self.fields["provider"].widget.attrs.update(
                {"hx-post": models_url, "hx-trigger": "change", "hx-vals": '{"models_action": "list"}',
                 # A save while the list loads wins: the list's answer must not replace "Saved"
                 # (static/js/app.js; not hx-sync's abort, which htmx logs as a console error).
                 "data-superseded-by-save": ""}
            )

    @property
    def models_pending(self) -> bool:
        """No list kept yet for this provider: the drawer loads it after the page."""
        return self.catalog_of is not None and self.catalog is None

    @property
    def model_option(self):
        """The chosen model as the provider lists it (context, prices), or None."""
        return self.catalog.option(self["model"].value()) if self.catalog is not None else None

    def _model_choices(self) -> None:
        """A dropdown of the listed models, with context and prices; the session's own model
        stays selectable (marked) when the provider does not list it, so it is never lost."""
        catalog = self.catalog
        if catalog is None or not catalog.models:
            return
        choices = [(option.id, option.label) for option in catalog.models]
        current = self.instance.model
        if catalog.provider.slug == self.instance.provider and current and not catalog.lists(current):
            choices.insert(0, (current, f"{current} — this session's model, not listed by {catalog.provider.name}"))
        self.fields["model"].widget = forms.Select(choices=choices)

    def clean(self):
        data = super().clean()
        provider, model = data.get("provider"), data.get("model")
        if self.catalog_of is None or not provider or not model or "model" in self.errors:
            return data
        if provider == self.instance.provider and model == self.instance.model:
            return data  # nothing to check: the session already sends this model there
        catalog = self.catalog_of(provider, "fetch")
        self.catalog = catalog
        self._model_choices()
        name = catalog.provider.name
        if catalog.problem:
            if model == self.instance.model:
                # The model the session already had: saving the rest must not depend on the
                # provider being up. The send will say so if it really cannot serve it.
                self.warning = f"{catalog.problem} The model “{model}” (this session's) was kept unchecked."
            else:
                self.add_error("model", f"{catalog.problem} “{model}” could not be checked, so nothing was saved; try again.")
        elif not catalog.lists(model):
            self.add_error(
                "model",
                f"{name} does not list the model “{model}”. Pick one of its {len(catalog.models)} models "
                "(Refresh if it was added just now); nothing was saved.",
            )
        return data

    def clean_system_prompt(self):
        text = self.cleaned_data["system_prompt"]
        limit = settings.PLAYGROUND_MAX_SYSTEM_PROMPT_CHARS
        if len(text) > limit:
            raise forms.ValidationError(f"The system prompt is {len(text):,} characters; the limit is {limit:,}.")
        return text


def _money_field(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        required=False, min_value=0, max_digits=12, decimal_places=2, label=label,
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "inputmode": "decimal"}),
    )


class BudgetForm(forms.Form):
    """A user's caps for one provider. Empty means the operator's default; the operator's
    ceiling is the most a cap may be."""

    daily_cap = _money_field("Daily cap ($)")
    monthly_cap = _money_field("Monthly cap ($)")

    def __init__(self, *args, ceilings, **kwargs):
        super().__init__(*args, **kwargs)
        self.ceilings = ceilings

    def _under_ceiling(self, field: str, period: str, words: str):
        value = self.cleaned_data[field]
        ceiling = self.ceilings.of(period)
        if value is not None and ceiling is not None and value > ceiling:
            raise forms.ValidationError(f"This deployment allows at most ${ceiling:,.2f} {words}.")
        return value

    def clean_daily_cap(self):
        return self._under_ceiling("daily_cap", "daily", "a day")

    def clean_monthly_cap(self):
        return self._under_ceiling("monthly_cap", "monthly", "a month")
