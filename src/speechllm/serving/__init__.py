"""`speechllm serve`: the HTTP server (admission control, batching) and its web page.

May import: `speechllm.inference`, `speechllm.model`, `speechllm.data` and the top-level basics.
"""
