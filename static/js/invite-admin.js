// The invitations admin's "Copy" buttons: copy the sign-up link next to them. Where the
// clipboard API is unavailable (plain HTTP on a non-local host), the link is selected instead.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy-link]");
  if (!button) return;
  const field = button.previousElementSibling;
  const selectField = () => { if (field) { field.focus(); field.select(); } };
  if (!navigator.clipboard) { selectField(); return; }
  navigator.clipboard.writeText(button.dataset.copyLink).then(
    () => { button.textContent = "Copied"; },
    selectField,
  );
});
