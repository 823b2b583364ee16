"""Layer 3: the web face (JSON API, websocket, pages, `/hooks/github`)."""
