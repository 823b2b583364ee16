"""The web face: JSON API, websocket, pages and the Flow progress overlay."""
