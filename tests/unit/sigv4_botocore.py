#!/usr/bin/python3
"""Reference signer for tests/unit/test_sigv4.c.

Reads one JSON request per line on stdin and writes, per line, the
Authorization header botocore's SigV4 signer gives it. The first line out is
"ok <botocore version>", or "skip <reason>" (and nothing else) when botocore
cannot be imported.

Request fields: method, path (not percent-encoded), query (list of
[key, value], not encoded), headers (list of [name, value], in order),
body (hex), region, service, when (Unix seconds), access_key, secret_key,
token (or absent), s3 (true: no path normalization, x-amz-content-sha256
signed, as for S3).
"""
import datetime
import json
import sys
import types
from urllib.parse import quote

try:
    import botocore
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except Exception as e:  # noqa: BLE001 - any import failure means skip
    print(f"skip cannot import botocore: {e}", flush=True)
    sys.exit(0)


class _Clock(datetime.datetime):
    """The signer reads the time itself; this hands it the request's."""

    fixed = None

    @classmethod
    def utcnow(cls):
        return cls.fixed.replace(tzinfo=None)

    @classmethod
    def now(cls, tz=None):
        return cls.fixed if tz is not None else cls.fixed.replace(tzinfo=None)


botocore.auth.datetime = types.SimpleNamespace(datetime=_Clock, timezone=datetime.timezone)


def sign(r):
    _Clock.fixed = datetime.datetime.fromtimestamp(r["when"], datetime.timezone.utc)
    creds = Credentials(r["access_key"], r["secret_key"], r.get("token") or None)
    if r.get("s3"):
        auth = botocore.auth.S3SigV4Auth(creds, r["service"], r["region"])
        # botocore's S3 signer takes the path already encoded.
        path = quote(r["path"], safe="/~")
    else:
        auth = botocore.auth.SigV4Auth(creds, r["service"], r["region"])
        path = r["path"]
    req = AWSRequest(
        method=r["method"],
        url="http://signing.test" + path,
        data=bytes.fromhex(r["body"]),
        params=[(k, v) for k, v in r["query"]],
    )
    for name, value in r["headers"]:
        req.headers[name] = value  # appends: repeated names are kept
    auth.add_auth(req)
    return req.headers["Authorization"]


def main():
    print(f"ok {botocore.__version__}", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            print(sign(json.loads(line)), flush=True)
        except Exception as e:  # noqa: BLE001 - reported to the test per line
            print(f"error {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
