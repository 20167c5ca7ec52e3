"""Forms of the account page's sign-in settings: the reset email, and deleting the account.

Both ask for the current password: a borrowed or stolen session alone can neither point the
password reset at another inbox nor delete the account.
"""

from __future__ import annotations

from django import forms


class _PasswordChecked(forms.Form):
    password = forms.CharField(
        label="Current password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def __init__(self, *args, user, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your current password.", code="password_incorrect")
        return password


class EmailForm(_PasswordChecked):
    prefix = "email"
    field_order = ["email", "password"]

    email = forms.EmailField(
        label="Email for password resets", required=False, max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
        help_text="Leave it empty to remove it: then the password cannot be reset by email.",
    )

    def __init__(self, *args, user, **kwargs):
        kwargs.setdefault("initial", {"email": user.email})
        super().__init__(*args, user=user, **kwargs)


class AccountDeleteForm(_PasswordChecked):
    prefix = "delete"
    field_order = ["confirm", "password"]

    confirm = forms.CharField(label="Type your username to confirm", strip=True, widget=forms.TextInput(attrs={"autocomplete": "off"}))

    def clean_confirm(self) -> str:
        confirm = self.cleaned_data["confirm"]
        if confirm != self.user.get_username():
            raise forms.ValidationError("Type your username exactly, to confirm.", code="confirm_mismatch")
        return confirm
