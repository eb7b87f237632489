"""Lambda events shaped as AWS documents them (HTTP API payload 2.0, REST API 1.0, Function URL)."""

from __future__ import annotations

from typing import Any

from bench.events import FakeContext, _body, http_api_v2  # noqa: F401  (the tests' events are the bench's)


def function_url(method: str, path: str, body: Any | None = None, headers: dict[str, str] | None = None) -> dict:
    """A Lambda function URL request: payload 2.0 with a lambda-url domain and no stage."""
    event = http_api_v2(method, path, body, headers)
    domain = "abcdefg.lambda-url.us-east-1.on.aws"
    event["headers"]["host"] = domain
    event["requestContext"].update({"domainName": domain, "domainPrefix": "abcdefg", "apiId": "abcdefg"})
    return event


def rest_api_v1(method: str, path: str, body: Any | None = None, headers: dict[str, str] | None = None) -> dict:
    """API Gateway REST API (payload format version 1.0), proxy integration."""
    text, _ = _body(body)
    all_headers = {"Content-Type": "application/json", "Host": "abc123.execute-api.us-east-1.amazonaws.com",
                   "User-Agent": "curl/8.4.0", "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Port": "443",
                   "X-Forwarded-Proto": "https", **(headers or {})}
    return {
        "version": "1.0",
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "httpMethod": method, "path": f"/prod{path}", "protocol": "HTTP/1.1", "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "resourcePath": "/{proxy+}", "stage": "prod", "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.4.0"},
        },
        "body": text,
        "isBase64Encoded": False,
    }


