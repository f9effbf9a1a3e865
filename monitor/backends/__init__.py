"""Gemma backends the monitor can start itself (for `gemma-monitor demo` and the e2e tests).

Production deployments point `MONITOR_BACKEND_URL` at a server they run (vLLM, Ollama,
llama.cpp, TGI); nothing in the request path imports this package.
"""

from monitor.backends.local import (
    BackendStartError,
    LocalBackendError,
    LocalGemmaServer,
    ModelUnavailableError,
    gguf_path,
)

__all__ = [
    "BackendStartError",
    "LocalBackendError",
    "LocalGemmaServer",
    "ModelUnavailableError",
    "gguf_path",
]
