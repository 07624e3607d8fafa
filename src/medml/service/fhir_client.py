"""Fetch a hook's prefetch from the EHR's FHIR server when the EHR did not send it (CDS Hooks 2.0, section 'prefetch').

Each query is a FHIR read (``Patient/123``) or search (``Observation?patient=123&code=...``) relative to
``fhirServer``, already filled in from the hook's context. The queries run concurrently; a search's pages are
followed (``next`` links, only on the FHIR server's own origin, so the token never leaves it) and merged into one
searchset Bundle. A read that finds nothing (404 or 410) gives ``None``, as the EHR itself would send; any other
failure raises :class:`FhirFetchError`, because scoring on part of a patient's record is worse than not scoring.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from medml.errors import MedmlError

FHIR_JSON = "application/fhir+json"


class FhirFetchError(MedmlError):
    """A prefetch query failed: which ``key``, the HTTP ``status`` (None without a response), and why."""

    def __init__(self, key: str, status: int | None, reason: str, fix: str = "") -> None:
        self.key = key
        self.status = status
        self.reason = reason
        http = f" (HTTP {status})" if status is not None else ""
        super().__init__(
            f"prefetch {key!r}: {reason}{http}",
            fix or "check the EHR's fhirServer and fhirAuthorization, then retry the hook",
        )


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


class _Fetcher:
    """The fetches of one hook call: the server, the headers, and the rules for what comes back."""

    def __init__(self, client: httpx.AsyncClient, fhir_server: str, access_token: str | None, max_pages: int) -> None:
        if not fhir_server.startswith(("http://", "https://")):
            raise FhirFetchError(
                "*",
                None,
                f"fhirServer {fhir_server!r} is not an http(s) URL",
                "the EHR must send fhirServer as an absolute URL",
            )
        if max_pages < 1:
            raise ValueError(f"max_pages must be at least 1, got {max_pages}")
        self.client = client
        self.base = fhir_server.rstrip("/") + "/"
        self.token = access_token
        self.max_pages = max_pages
        self.headers = {"Accept": FHIR_JSON}
        if access_token:
            self.headers["Authorization"] = f"Bearer {access_token}"

    async def get(self, key: str, url: str) -> tuple[int, dict[str, Any] | None]:
        """(status, the JSON object) of one GET; None for a 404 or 410; FhirFetchError for anything unusable."""
        try:
            response = await self.client.get(url, headers=self.headers)
        except httpx.TimeoutException:
            raise FhirFetchError(
                key,
                None,
                "the FHIR server did not answer in time",
                "retry; if it persists, check the FHIR server or raise fhir_timeout_s",
            ) from None
        except httpx.HTTPError as exc:
            raise FhirFetchError(
                key,
                None,
                f"cannot reach the FHIR server ({type(exc).__name__})",
                "check that fhirServer is reachable from the CDS service",
            ) from None
        status = response.status_code
        if status in (404, 410):
            return status, None
        if status == 401:
            raise FhirFetchError(
                key,
                status,
                "the FHIR server refused the access token",
                "the EHR's fhirAuthorization token is missing, wrong or expired",
            )
        if status == 403:
            raise FhirFetchError(
                key,
                status,
                "the access token does not allow this read",
                "the service's prefetch needs scopes the EHR did not grant",
            )
        if status >= 500:
            raise FhirFetchError(key, status, "the FHIR server failed", "retry later; the fault is on the server")
        if status != 200:
            raise FhirFetchError(
                key,
                status,
                f"unexpected answer{_diagnostics(response, self.token)}",
                "check the prefetch template against the FHIR server's CapabilityStatement",
            )
        try:
            body = response.json()
        except ValueError:
            raise FhirFetchError(
                key,
                status,
                "the FHIR server's answer is not valid JSON",
                "the FHIR server must answer application/fhir+json",
            ) from None
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise FhirFetchError(
                key,
                status,
                "the answer is not a FHIR resource (no resourceType)",
                "the FHIR server must answer a FHIR resource",
            )
        return status, body

    def url(self, key: str, query: str) -> str:
        if query.startswith(("http://", "https://", "//")) or not query.strip("/ "):
            raise FhirFetchError(
                key,
                None,
                f"prefetch query {query!r} is not relative to fhirServer",
                "a prefetch template is a FHIR query such as Patient/{{context.patientId}}",
            )
        return urljoin(self.base, query.lstrip("/"))

    async def fetch(self, key: str, query: str) -> dict[str, Any] | None:
        path = query.split("?", 1)[0].strip("/")
        is_read = "?" not in query and len(path.split("/")) == 2
        rtype = path.split("/")[0]
        status, body = await self.get(key, self.url(key, query))
        if body is None:
            if is_read:
                return None
            raise FhirFetchError(
                key,
                status,
                f"the FHIR server has no {rtype!r} search",
                "check the resource type in the prefetch template",
            )
        if is_read:
            if body["resourceType"] != rtype:
                raise FhirFetchError(
                    key,
                    status,
                    f"asked for a {rtype}, got a {body['resourceType']}",
                    "check the prefetch template and the FHIR server",
                )
            return body
        return await self.all_pages(key, rtype, body)

    async def all_pages(self, key: str, rtype: str, first: dict[str, Any]) -> dict[str, Any]:
        """The entries of every page in one searchset Bundle (total and self link of the first page)."""
        entries: list[Any] = []
        page: dict[str, Any] | None = first
        seen: set[str] = set()
        pages = 0
        while page is not None:
            if page.get("resourceType") != "Bundle" or page.get("type") != "searchset":
                raise FhirFetchError(
                    key,
                    200,
                    f"a search answered a {page.get('resourceType')} ({page.get('type')}), not a searchset Bundle",
                    "check the FHIR server",
                )
            pages += 1
            for entry in page.get("entry") or []:
                if (entry.get("search") or {}).get("mode", "match") != "match":
                    continue  # an _include or an OperationOutcome about the search, not an answer
                found = (entry.get("resource") or {}).get("resourceType")
                if found != rtype:
                    raise FhirFetchError(
                        key,
                        200,
                        f"a search for {rtype} answered a {found}",
                        "check the prefetch template and the FHIR server",
                    )
                entries.append(entry)
            next_url = _link(page, "next")
            if next_url is None:
                break
            if pages >= self.max_pages:
                raise FhirFetchError(
                    key,
                    None,
                    f"the search has more than {self.max_pages} pages",
                    "narrow the prefetch query (a date or code filter), or raise max_pages",
                )
            url = urljoin(self.base, next_url)
            if _origin(url) != _origin(self.base):
                raise FhirFetchError(
                    key,
                    None,
                    "the FHIR server's next link points to another server; the token is not sent there",
                    "check the FHIR server's base URL",
                )
            if url in seen:
                raise FhirFetchError(
                    key, None, "the FHIR server's next links go round in a loop", "check the FHIR server's paging"
                )
            seen.add(url)
            _, page = await self.get(key, url)
            if page is None:
                raise FhirFetchError(key, 404, "a next page of the search is gone", "retry the hook")
        merged: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": first.get("total", len(entries)),
        }
        self_link = _link(first, "self")
        if self_link is not None:
            merged["link"] = [{"relation": "self", "url": self_link}]
        merged["entry"] = entries
        return merged


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == relation and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _diagnostics(response: httpx.Response, token: str | None) -> str:
    """The diagnostics of an OperationOutcome answer, short, with the token blanked if a server echoed it."""
    try:
        body = response.json()
        issues = body.get("issue") if isinstance(body, dict) else None
        text = "; ".join(str(i.get("diagnostics") or i.get("code")) for i in issues or [] if isinstance(i, dict))
    except ValueError:
        text = ""
    return f": {_redact(text, token)[:300]}" if text else ""


async def fetch_prefetch(
    client: httpx.AsyncClient,
    fhir_server: str,
    access_token: str | None,
    queries: Mapping[str, str],
    *,
    max_pages: int = 20,
) -> dict[str, dict[str, Any] | None]:
    """Each prefetch key's resource (a read), merged searchset Bundle (a search) or None (a read that found nothing).

    The queries run concurrently on ``client`` (its timeout applies to each request); the first failure cancels the
    rest and raises :class:`FhirFetchError`, which names the key and never the token.
    """
    fetcher = _Fetcher(client, fhir_server, access_token, max_pages)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = {key: group.create_task(fetcher.fetch(key, query)) for key, query in queries.items()}
    except ExceptionGroup as failures:
        matched, _ = failures.split(FhirFetchError)
        if matched is None:
            raise
        first = matched.exceptions[0]
        while isinstance(first, ExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return {key: task.result() for key, task in tasks.items()}


__all__ = ["FhirFetchError", "fetch_prefetch"]
