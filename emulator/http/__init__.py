"""The HTTP side: the ASGI app, its plumbing, and the routes of each surface (``routes/``)."""
