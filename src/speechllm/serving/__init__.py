"""`speechllm serve`: the HTTP server (`server`: app and routes), its settings and response shapes
(`config`), admission control and batching (`batcher`) and its web page (`web/`).

May import: `speechllm.inference`, `speechllm.model`, `speechllm.data` and the top-level basics.
"""
