"""The dashboard's views, templates and static files (served by ``emulator.http.routes.ui``)."""
