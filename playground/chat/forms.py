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
