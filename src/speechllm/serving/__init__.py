"""`speechllm serve`: the HTTP server and its web page.

Modules:
- `server`: the app and its routes (`POST /v1/understand`, the page).
- `config`: the server's settings (`ServerConfig`) and response shapes.
- `batcher`: admission control and batching of (clip, task) rows.
- `runner`: where the model runs: a worker process of its own, or a thread.
- `web/`: the page (index.html, app.js, style.css).

May import: `speechllm.errors`, `speechllm.labels`, `speechllm.config`, `speechllm.hub`,
`speechllm.data`, `speechllm.model`, `speechllm.inference`.
"""
