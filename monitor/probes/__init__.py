"""Probes: what the host, the GPUs and the backend look like, sampled off the request path.

Each probe is one step (`sample()`, `check()`, `scrape()`) that returns a typed sample and never
raises for a condition it can describe; `worker.PeriodicWorker` repeats a step on an interval.
Nothing here imports a web, HTTP or database library: the app passes in what a step needs (an
async `send` or `fetch` callable) and hands the samples to the store.
"""
