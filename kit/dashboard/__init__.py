"""The cluster dashboard: a web page (port 8265) that watches a cluster, read-only.

    head process (kit/head.py)                   dashboard process (forked by kit/boot.py)
    ──────────────────────────                   ─────────────────────────────────────────
    Scheduler, events deque  ◀── QUERY ───────── collector.py: a driver connection that
    probe.py: the "dashboard"     nodes,            reads nodes, events(since) and the
      query (workers, actors,     events,           "dashboard" query twice a second,
      drivers, failures kept      dashboard         folds them into model.py (pure)
      as they happen)        ─── LOG lines ────▶    and machine figures (procstats.py)
                                                 server.py (tornado): /  /ws  /metrics
                                                   /timeline.json  /api/stack/<worker>
                                                   token checked on every request (auth.py)
                                                        │ websocket push, twice a second
                                                        ▼
                                                 browser: static/ (plain HTML and JS)

The dashboard runs in its own process, so the head's loop only answers a few
queries a second, and only while a page is open. ``launch.py`` binds its port in
the head's process before anything else (8265, or the next free one), so
``kit.init()`` knows the URL at once, and forks the dashboard, which dies with the
head. Until the first page comes that process is a sleeping fork of the head's that
has imported nothing (``launch.run``); then it imports tornado, connects and reads
the head's event log from its start (the last 100,000 events). Output that tasks
printed before then is not kept. The head itself imports only ``probe``.
"""
