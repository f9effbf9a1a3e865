"""The non-proxy HTTP routes, built into one FastAPI app by `monitor.api.routes.build_api`:
`ops` (/health, /ready, /metrics), `listing` (model lists), `feedback`, `admin` and
`admin_stats` (behind the admin token). Their errors are rendered in one place, `errors`."""
