"""Who may read the dashboard: holders of the cluster's token, or of its view token.

The cluster's token lets its holder run code on every node, so the links kit prints
carry a *view token* instead: an HMAC of the cluster's token that opens the
dashboard and nothing else (the dashboard is read-only). A ``?token=`` link sets a
cookie, as Jupyter's do; the cookie holds a third derived value, since cookies are
sent to every port of a host (a Jupyter server on 8888 sees it). Every comparison
is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac


def derive(token: str, purpose: str) -> str:
    """A secret derived from the cluster's token for one purpose ("view", "cookie").

    Example:
        >>> len(derive("t" * 32, "view")), derive("t", "view") != derive("t", "cookie")
        (32, True)
    """
    return hmac.new(
        token.encode(), b"kit-dashboard-" + purpose.encode(), hashlib.sha256
    ).hexdigest()[:32]


def view_token(token: str) -> str:
    """The token that kit's printed links carry: it opens the dashboard only.

    Example:
        >>> view_token("secret") == derive("secret", "view")
        True
    """
    return derive(token, "view")


def link(url: str, token: str, panel: str = "") -> str:
    """The dashboard's URL with the view token (and a panel to show alone).

    Example:
        >>> link("http://127.0.0.1:8265", "secret", "stream").startswith("http://127.0.0.1:8265/?token=")
        True
    """
    out = f"{url.rstrip('/')}/?token={view_token(token)}"
    return out + (f"&panel={panel}" if panel else "")


class Gate:
    """Checks a request's token (query argument) or cookie against the cluster's token.

    Example:
        >>> g = Gate("secret")
        >>> g.token_ok(view_token("secret")), g.token_ok("secret"), g.token_ok("nope")
        (True, True, False)
        >>> g.cookie_ok(g.cookie), g.cookie_ok(None)
        (True, False)
    """

    def __init__(self, token: str):
        self._token = token.encode()
        self._view = view_token(token).encode()
        self.cookie = derive(token, "cookie")

    def token_ok(self, given) -> bool:
        """True if ``given`` is the cluster's token or its view token."""
        if not given:
            return False
        g = given.encode() if isinstance(given, str) else bytes(given)
        # both comparisons always run: the time taken says nothing about which matched
        a = hmac.compare_digest(g, self._token)
        b = hmac.compare_digest(g, self._view)
        return a or b

    def cookie_ok(self, given) -> bool:
        """True if ``given`` is the cookie a ``?token=`` link set."""
        if not given:
            return False
        g = given.encode() if isinstance(given, str) else bytes(given)
        return hmac.compare_digest(g, self.cookie.encode())
