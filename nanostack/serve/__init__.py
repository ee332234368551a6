"""serve: `nanostack serve RUN_DIR`, an OpenAI-compatible HTTP API over one run, with continuous batching,
safe defaults, a web page (playground, dashboard, data explorer), Prometheus metrics and opt-in telemetry.

    server.py        load, bind, run uvicorn (and BackgroundServer for tests and benchmarks)
    settings.py      ServeSettings and the checks of the command line
    served.py        the served run: model, tokenizer, engine, schemas, text -> token ids
    engine.py        the engine thread: continuous batching over rows of a preallocated KV cache
    rows.py          where each row's context lives (RowKVCache for a GPT; windows for other models)
    sampling.py      per-row sampling, batch-independent; logprobs
    text.py          token ids -> text: whole code points, stop strings
    chat_template.py messages -> prompt (the seam for nanostack.chat's renderer)
    schemas.py       request/response models: validation and /openapi.json
    openai_api.py    /v1/models, /v1/completions, /v1/chat/completions (streamed or not)
    responses.py     engine events -> OpenAI bodies and SSE chunks
    dashboard.py     /api/runs...: runs under --runs-root, their metrics and config
    explorer.py      examples by loss (the seam for the data engine's scores)
    security.py      Host allow-list, bearer token, page headers, run names
    metrics.py       Prometheus; telemetry.py: Parquet of requests; llms_txt.py: /llms.txt
    static/          the page: index.html, app.js, app.css (no build step, nothing from a CDN)

FastAPI, uvicorn and prometheus-client come with the optional extra `nanostack[serve]`; nothing here
is imported by `import nanostack.serve`, so the CLI can say what to install.
"""
