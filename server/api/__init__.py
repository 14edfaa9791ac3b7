"""The HTTP surface: the app, its dependencies and middleware, routers, live events, the UI."""
