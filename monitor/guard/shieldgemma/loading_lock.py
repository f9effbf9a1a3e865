"""One lock for every transformers model load in this process.

`from_pretrained` is not safe to run in two threads at once (transformers 5 builds models on
the meta device through process-wide state; two loads at the same time fail with "Cannot copy
out of meta tensor"). Each classifier loads in its own worker thread, so loads are serialised
here: a process-wide resource, hence a process-wide lock. Forward passes do not take it.
"""

from __future__ import annotations

import threading

LOADING_LOCK = threading.Lock()
