"""Fetching web pages for web sources, so that no user can make the server fetch what it must not.

Only http(s). Every address a host resolves to is checked, and the connection goes to the checked address (not to a
second lookup that could answer otherwise); private, loopback, link-local, multicast, reserved and unspecified
addresses are refused unless KNOWLEDGE_WEB_ALLOW_PRIVATE allows them. Redirects are followed here, a bounded number
of times, each hop checked again. Bodies are read under a byte limit and a deadline; requests are spaced to a rate.
No proxy from the environment is used (http.client, not urllib.request), so the checks are about the real peer.
"""

from __future__ import annotations

import gzip
import http.client
import io
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib import robotparser
from urllib.parse import SplitResult, urldefrag, urljoin, urlsplit, urlunsplit

from lxml import etree

from core.errors import DomainError, InvalidInput

REDIRECTS = frozenset({301, 302, 303, 307, 308})
ROBOTS_MAX_BYTES = 512 * 1024
SITEMAP_MAX_BYTES = 10 * 1024 * 1024
# A sitemap index may name other indexes; this many sitemaps are read per sync at most.
SITEMAPS_MAX = 50
_READ_SIZE = 64 * 1024

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(InvalidInput):
    """The URL cannot be fetched: not http(s), or its host is an address the server may not reach."""


class FetchFailed(DomainError):
    """The page could not be fetched (network error, time limit, too many redirects)."""


class PageTooLarge(FetchFailed):
    """The page is larger than the limit."""


@dataclass(frozen=True)
class Response:
    url: str  # where the answer came from, after redirects
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes  # read only for a 200

    @property
    def is_html(self) -> bool:
        return "html" in self.headers.get("content-type", "").lower()


def url_clean(url: str) -> str:
    """`url` without its fragment; raises UrlRefused unless it is an absolute http(s) URL with a host."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlRefused(f"Only http and https URLs can be added, not {url!r}.", url=url)
    if not parts.hostname:
        raise UrlRefused(f"{url!r} has no host.", url=url)
    if parts.username is not None or parts.password is not None:
        raise UrlRefused(f"{url!r} holds credentials; a web source is fetched without them.", url=url)
    try:
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"{url!r} has an invalid port.", url=url) from exc
    if not parts.hostname.isascii():
        # The host as DNS and the Host header take it ("bücher.example" -> "xn--bcher-kva.example").
        try:
            host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise UrlRefused(f"{url!r} has an invalid host name.", url=url) from exc
        parts = parts._replace(netloc=host if port is None else f"{host}:{port}")
    return urldefrag(urlunsplit(parts._replace(scheme=parts.scheme.lower())))[0]


def address_refused(address: Address) -> bool:
    """True for an address the server must not fetch from unless private addresses are allowed."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def host_addresses(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to; raises FetchFailed when it does not resolve."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchFailed(f"{host} could not be resolved ({exc}).", host=host) from exc
    # The scope of a link-local IPv6 address ("fe80::1%eth0") is not part of the address.
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise FetchFailed(f"{host} has no address.", host=host)
    return addresses


def _default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def url_address(url: str, *, allow_private: bool) -> Address:
    """The address to connect to for `url`; raises UrlRefused when any address of its host is refused."""
    parts = urlsplit(url_clean(url))
    host = parts.hostname or ""
    addresses = host_addresses(host, _default_port(parts))
    if not allow_private:
        refused = [str(address) for address in addresses if address_refused(address)]
        if refused:
            raise UrlRefused(
                f"{url} is refused: {host} resolves to {', '.join(refused)}, a private, loopback, link-local, "
                "multicast or reserved address (KNOWLEDGE_WEB_ALLOW_PRIVATE is off).",
                url=url,
            )
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address, whatever a new lookup of the host would say; Host is the URL's."""

    def __init__(self, host: str, port: int, *, address: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self.address), self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, *, address: Address, timeout: float) -> None:
        self.ssl_context = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.ssl_context)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((str(self.address), self.port), self.timeout)
        # The certificate is checked against the URL's host name, not the address.
        self.sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class Fetcher:
    """GETs URLs one at a time, at most `requests_per_second`, following redirects itself."""

    def __init__(
        self,
        *,
        allow_private: bool,
        user_agent: str,
        timeout: float,
        max_redirects: int,
        requests_per_second: float,
    ) -> None:
        self.allow_private = allow_private
        self.user_agent = user_agent
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.interval = 1.0 / requests_per_second
        self._last_request = 0.0

    def slow_down(self, seconds: float) -> None:
        """Space requests at least `seconds` apart (a robots.txt Crawl-delay)."""
        self.interval = max(self.interval, seconds)

    def get(self, url: str, *, max_bytes: int, headers: dict[str, str] | None = None) -> Response:
        """The answer to GET `url` after redirects; raises UrlRefused, PageTooLarge or FetchFailed."""
        for _ in range(self.max_redirects + 1):
            address = url_address(url, allow_private=self.allow_private)
            response = self._request(url, address, max_bytes=max_bytes, headers=headers or {})
            location = response.headers.get("location")
            if response.status not in REDIRECTS or not location:
                return response
            url = urldefrag(urljoin(url, location.strip()))[0]
        raise FetchFailed(f"{url}: more than {self.max_redirects} redirects.", url=url)

    def _throttle(self) -> None:
        wait = self._last_request + self.interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()

    def _request(self, url: str, address: Address, *, max_bytes: int, headers: dict[str, str]) -> Response:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = _default_port(parts)
        connection_class = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
        connection = connection_class(host, port, address=address, timeout=self.timeout)
        target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        self._throttle()
        deadline = time.monotonic() + self.timeout
        try:
            connection.request(
                "GET",
                target,
                # No Accept-Encoding: the body comes as it is, so the byte limit is the size of what is kept.
                headers={"User-Agent": self.user_agent, "Accept": "*/*", **headers},
            )
            answer = connection.getresponse()
            answer_headers = {name.lower(): value for name, value in answer.getheaders()}
            body = b""
            if answer.status == 200:
                declared = answer_headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise PageTooLarge(
                        f"{url} is {int(declared):,} bytes; the limit is {max_bytes:,}.", url=url
                    )
                body = _read_limited(answer, url=url, max_bytes=max_bytes, deadline=deadline)
        except (OSError, http.client.HTTPException) as exc:
            kind = (
                "timed out" if isinstance(exc, TimeoutError) else f"failed ({exc.__class__.__name__}: {exc})"
            )
            raise FetchFailed(f"{url}: the request {kind}.", url=url) from exc
        finally:
            connection.close()
        return Response(url=url, status=answer.status, headers=answer_headers, body=body)


def _read_limited(answer: http.client.HTTPResponse, *, url: str, max_bytes: int, deadline: float) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise FetchFailed(f"{url}: the page took longer than the time limit to arrive.", url=url)
        block = answer.read(_READ_SIZE)
        if not block:
            return b"".join(parts)
        size += len(block)
        if size > max_bytes:
            raise PageTooLarge(f"{url} is larger than the limit of {max_bytes:,} bytes.", url=url)
        parts.append(block)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.lower(), "", "", ""))


def same_site(url: str, other: str) -> bool:
    return origin(url) == origin(other)


_DISALLOW_ALL = ["User-agent: *", "Disallow: /"]


def robots_fetch(fetcher: Fetcher, url: str) -> robotparser.RobotFileParser:
    """The robots.txt rules of `url`'s site, read as urllib.robotparser reads them: a 401 or 403 forbids the site,
    another 4xx allows it; a site whose robots.txt cannot be read (5xx, network error) is not fetched."""
    rules = robotparser.RobotFileParser(origin(url) + "/robots.txt")
    try:
        answer = fetcher.get(origin(url) + "/robots.txt", max_bytes=ROBOTS_MAX_BYTES)
    except (FetchFailed, UrlRefused):
        rules.parse(_DISALLOW_ALL)
        return rules
    if answer.status in (401, 403) or answer.status >= 500:
        rules.parse(_DISALLOW_ALL)
    elif answer.status >= 400:
        rules.parse([])
    elif answer.status == 200:
        rules.parse(answer.body.decode("utf-8", errors="replace").splitlines())
    else:
        rules.parse([])
    return rules


def _local_name(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def sitemap_parse(data: bytes, *, max_bytes: int = SITEMAP_MAX_BYTES) -> tuple[str, list[str]]:
    """("urlset" or "sitemapindex", the <loc> URLs) of a sitemap, gzipped or not; raises FetchFailed."""
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as unzipped:
                data = unzipped.read(max_bytes + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise FetchFailed(f"A damaged gzipped sitemap ({exc}).") from exc
        if len(data) > max_bytes:
            raise FetchFailed(f"The sitemap inflates to more than {max_bytes:,} bytes.")
    # No entities resolved, no network, no huge trees: a sitemap is data, never instructions to the parser.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=False)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise FetchFailed(f"The sitemap is not valid XML ({exc}).") from exc
    locations = [
        element.text.strip()
        for element in root.iter()
        if _local_name(element.tag) == "loc" and element.text and element.text.strip()
    ]
    return _local_name(root.tag), locations


@dataclass(frozen=True)
class PageContent:
    title: str
    links: list[str]


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base = ""
        self.title_parts: list[str] = []
        self.in_title = False
        self.seen_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(str(values["href"]))
        elif tag == "base" and values.get("href") and not self.base:
            self.base = str(values["href"])
        elif tag == "title" and not self.seen_title:
            self.in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self.in_title:
            self.in_title = False
            self.seen_title = True

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title_parts.append(data)


def page_content(data: bytes, *, url: str) -> PageContent:
    """The title of an HTML page and the http(s) links on it, absolute and without fragments, in page order."""
    parser = _PageParser()
    parser.feed(data.decode("utf-8", errors="replace"))
    parser.close()
    base = urljoin(url, parser.base) if parser.base else url
    links = _unique(_absolute(base, href) for href in parser.hrefs)
    title = " ".join("".join(parser.title_parts).split())
    return PageContent(title=title, links=[link for link in links if link])


def _absolute(base: str, href: str) -> str:
    link = urldefrag(urljoin(base, href.strip()))[0]
    return link if urlsplit(link).scheme in ("http", "https") else ""


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
