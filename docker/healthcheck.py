"""Container healthcheck for the web server: exit 0 if GET /login/ answers 200.

Used by the image's HEALTHCHECK and by compose. Standard library only (no curl in the slim
image), and deliberately not a plain `urllib.urlopen("http://localhost:8000/login/")`:

* Host: Django answers 400 (DisallowedHost) to a Host that is not in DJANGO_ALLOWED_HOSTS,
  and a production deployment usually allows only its public name. So the request carries
  the first allowed host instead of "localhost".
* X-Forwarded-Proto: https: with PLAYGROUND_HTTPS=1 and DJANGO_SECURE_SSL_REDIRECT=1 a
  plain-HTTP request gets a 301 to https://<public name>/, which urllib would follow out
  of the container. uvicorn runs with --proxy-headers, so this header makes the request
  count as HTTPS, exactly as if the TLS proxy had sent it. Redirects are never followed.

Usage: python healthcheck.py [PATH] (default /login/, which needs no login and no database).
"""

import http.client
import os
import sys

PORT = 8000  # the port the image's CMD binds inside the container


def _host() -> str:
    hosts = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]
    for host in hosts:
        if host != "*":
            # ".example.com" allows example.com and its subdomains: example.com matches it.
            return host.lstrip(".")
    return "localhost"  # unset (Django's default list includes it) or "*"


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "/login/"
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=8)  # under compose's 10 s
    try:
        conn.request("GET", path, headers={"Host": _host(), "X-Forwarded-Proto": "https"})
        status = conn.getresponse().status
    except OSError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if status != 200:
        print(f"unhealthy: GET {path} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
