"""The run page's URL for the terminal: printed when a run starts (`flowrun demo`, `flowrun run
--open`), saying whether a `flowrun serve` answers there, and opened in a browser on request.

The CLI drives the run in its own process; the page is served by `flowrun serve` over the same
home, which follows runs committed by other processes. Probing `/healthz` (loopback, half a
second at most) keeps the CLI from presenting a link as live when nothing serves it.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from rich.console import Console


def run_page_url(public_url: str, run_id: str) -> str:
    return f"{public_url.rstrip('/')}/runs/{run_id}"


def server_answers(public_url: str, timeout_s: float = 0.5) -> bool:
    """True if an HTTP server answers `/healthz` at `public_url` (starting up counts)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{public_url.rstrip('/')}/healthz", timeout=timeout_s) as response:
            return bool(response.status)
    except urllib.error.HTTPError:
        return True  # something answered (503 while its engine starts)
    except (OSError, ValueError):
        return False


def announce(console: Console, public_url: str, run_id: str, *, open_browser: bool = False) -> str:
    url = run_page_url(public_url, run_id)
    if server_answers(public_url):
        console.print(f"Run page: [link={url}]{url}[/link]")
        if open_browser:
            import webbrowser

            if not webbrowser.open(url):
                console.print("(no browser to open here: open the link above)", style="dim")
    else:
        console.print(f"Run page: {url}  [dim](served by `flowrun serve`; start it to open the page)[/dim]")
    return url
