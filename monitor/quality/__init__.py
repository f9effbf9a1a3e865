"""Response quality scorers, off the request path.

- `heuristic`: the seed's four scores (relevance, coherence, safety, factual accuracy), pure.
- `embedding`: prompt/response cosine similarity with all-MiniLM-L6-v2 (the `quality` extra).
- `judge`: the backend Gemma rates the response 1-5; the prompt and the parser live here, the
  call is injected.

Every score is a float in 0..1, higher is better.
"""
