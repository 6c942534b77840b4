"""web: the LAN status page, JSON API, Prometheus metrics and the local control socket.

The daemon implements :class:`router.web.source.StatusSource` and starts the two servers:

    web = await start_web_server(source, "10.1.1.1", 80, token=b"...")   # router.web.api
    control = await start_control_server(source, "/run/router/control.sock")  # router.web.control
    ...
    await web.close(); await control.close()

Stdlib only (asyncio streams); see SCHEMA.md for the snapshot and the metrics.
"""
