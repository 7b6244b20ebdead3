"""A view's place in a notebook: shown under a display id, its final state written back.

    show(widget, text, html) ──▶ display({widget view, text/plain, text/html}, display_id=D)
    finish(D, widget, text, html) ──▶ update_display(D): the same output, now holding the
                                     final text and HTML (and the widget, unless closed)
                                  ──▶ once more after the cell that runs next (post_execute)

A widget's output in a notebook file holds a mime bundle: the widget's model id,
which renders only while its kernel runs (or from saved widget state), and text
and HTML, which are what a notebook opened later, or exported by nbconvert
without widget state, shows. A view shown here carries its text and HTML too, and
when it stops (the cluster shut down, the batch ended, the monitor was closed) it
writes its final state into that same output. An update sent from a thread while
no cell runs may reach no one who records it (nbclient reads only the running
cell's messages), so each final update is sent again from the next cell's
``post_execute``; the front end applies it by display id wherever the view is.
"""

from __future__ import annotations

import threading
import uuid

# A kernel killed outright sends nothing more: the page keeps the monitor's last live
# picture. When JupyterLab restarts the kernel, ipywidgets marks every view of the old
# kernel's widgets with the class jupyter-widgets-disconnected (and a broken-link icon on
# each of the monitor's cells). These rules, shipped in the header, turn "live" into
# GONE_LABEL, dim the table's last figures and hide the icons.
GONE_LABEL = '<span class="kit-gone">not updated: its kernel stopped</span>'
DISCONNECTED_CSS = (
    "<style>.kit-header .kit-gone{display:none}"
    ".kit-header.jupyter-widgets-disconnected .kit-live{display:none}"
    ".kit-header.jupyter-widgets-disconnected .kit-gone{display:inline;color:#c62828}"
    ".kit-monitor.jupyter-widgets-disconnected .widget-gridbox{opacity:.5}"
    ".kit-monitor.jupyter-widgets-disconnected::before,"
    ".kit-monitor .jupyter-widgets-disconnected::before,"
    ".kit-header.jupyter-widgets-disconnected::before{display:none}</style>"
)  # (a progress bar's or a status line's text carries the class kit-header too)


def while_live(inner_html: str) -> str:
    """``inner_html`` as a progress bar or a status line shows it while it is updated: if
    its kernel is killed, the page's CSS (``DISCONNECTED_CSS``) adds "not updated: its
    kernel stopped" after it (its view needs the class ``kit-header``).

    Example:
        >>> while_live("3/10 done").startswith('3/10 done <span class="kit-gone">')
        True
    """
    return f"{inner_html} {GONE_LABEL}{DISCONNECTED_CSS}"


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

_pending: dict = {}  # display id -> (widget, text, html), to send again after the next cell
_lock = threading.Lock()
_hooked = False


def bundle(widget, text: str, html: str) -> dict:
    """The mime bundle of a view: the widget (if it is open) with text and HTML beside it.

    Example:
        >>> bundle(None, "3/3 done", "<b>3/3 done</b>")
        {'text/plain': '3/3 done', 'text/html': '<b>3/3 done</b>'}
    """
    data = {}
    if widget is not None and getattr(widget, "comm", None) is not None:
        data.update(widget._repr_mimebundle_())
    data["text/plain"] = text
    data["text/html"] = html
    return data


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def show(widget, text: str, html: str) -> str:
    """Display ``widget`` with its text and HTML; return the display id to finish it with.

    Example:
        >>> show(None, "a", "<b>a</b>")  # doctest: +SKIP
        'kit-3f2a...'
    """
    from IPython.display import display

    display_id = f"kit-{uuid.uuid4().hex}"
    display(bundle(widget, text, html), raw=True, display_id=display_id)
    return display_id


def finish(display_id, widget, text: str, html: str) -> None:
    """Write a view's final state into its output (now, and after the next cell).

    Args:
        display_id: what ``show`` returned (None: nothing was shown; nothing is sent).
        widget: the widget, still shown beside the text if it is open; None or a
            closed widget leaves only the text and HTML.
        text: the final text (``text/plain``).
        html: the final HTML (``text/html``).
    """
    if display_id is None:
        return
    _send(display_id, bundle(widget, text, html))
    shell = _shell()
    if shell is None or getattr(shell, "kernel", None) is None:
        return
    with _lock:
        _pending[display_id] = (widget, text, html)
        global _hooked
        if not _hooked:
            shell.events.register("post_execute", _resend)
            _hooked = True


def _send(display_id, data) -> None:
    try:
        from IPython.display import update_display

        update_display(data, raw=True, display_id=display_id)
    except Exception:  # noqa: BLE001 - no kernel, or it is going: nothing can show it
        pass


def _resend() -> None:
    with _lock:
        items = list(_pending.items())
        _pending.clear()
    for display_id, (widget, text, html) in items:
        _send(display_id, bundle(widget, text, html))  # a widget closed since: text only


def pending() -> int:
    """Final states not yet sent again after a cell (for tests)."""
    with _lock:
        return len(_pending)
