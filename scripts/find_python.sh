#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (Django 6 needs it): $PYTHON, then python3.13/3.12/3 on
# PATH, then pyenv's installed versions. Exit 1 with a clear message if there is none.
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
for candidate in "${PYTHON:-}" python3.13 python3.12 python3; do
  [ -n "$candidate" ] || continue
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if ok "$path"; then echo "$path"; exit 0; fi
done
for path in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
  if [ -x "$path" ] && ok "$path"; then echo "$path"; exit 0; fi
done
echo "Python 3.12 or newer is required (Django 6). Install it, or set PYTHON=/path/to/python3.12." >&2
exit 1
