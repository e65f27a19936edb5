"""``sluice mock``: a provider emulator for tests, benchmarks and the gateway's demo model.

It speaks the real wire formats, validates requests as strictly as the real APIs (so a
translation bug in a Sluice adapter fails here the way it would upstream), answers
deterministically, and injects latency and faults on demand.

Endpoints
---------
* OpenAI: ``POST /v1/chat/completions`` (JSON, SSE), ``POST /v1/embeddings``, ``POST /v1/moderations``,
  ``GET /v1/models``; ``Authorization: Bearer <anything>``. Moderation flags what
  :mod:`sluice.mock.moderation`'s trigger rules say (``[[hate]]``-style markers, a few phrases).
* Azure OpenAI: ``POST /openai/deployments/{deployment}/chat/completions|embeddings?api-version=…``;
  ``api-key`` header (or a bearer token).
* Anthropic: ``POST /v1/messages`` (JSON, SSE); ``x-api-key`` and ``anthropic-version`` headers.
* Gemini: ``POST /v1beta/models/{model}:generateContent | :streamGenerateContent?alt=sse |
  :embedContent | :batchEmbedContents`` (also under ``/v1``); ``x-goog-api-key`` or ``?key=``.
* TGI: ``POST /generate``, ``POST /generate_stream``, ``GET /info`` — and the same under
  ``/tgi/{model}/`` to give TGI traffic a model name (TGI requests have none; the root
  routes count as model ``"tgi"``).
* Control: ``POST/GET/DELETE /_mock/faults``, ``GET/DELETE /_mock/requests``, ``GET /_mock/health``.

Replies
-------
See :mod:`sluice.mock.replies`: text is ``"Echo: " + last user text`` (a model whose name contains
"guard" answers like Llama Guard instead: ``safe`` or ``unsafe\nS10``); offered tools are
called with arguments sampled from their JSON Schema; input tokens are ``ceil(chars/4)``,
output tokens one per word. Tests compute expected values with
``replies.expected_text_reply``, ``replies.count_input_tokens`` and ``replies.count_output_tokens``.

Fault directives in the model name
----------------------------------
``<base>(+<key>=<value>)*`` — e.g. ``mock-model+fail=429+retry_after=2``.

=============== ===================================================================
``fail=S``      answer HTTP ``S`` (400..599) in the dialect's error format; alone it
                applies to every request
``retry_after=X`` send ``Retry-After: X`` (seconds) and ``retry-after-ms`` with failures
``fail_first=N`` only the first N requests (per full model name) fail, then they succeed
``fail_rate=R``  a fraction R of requests fail, deterministically: request k fails when
                ``floor(k*R) > floor((k-1)*R)`` (R=0.5 fails requests 2, 4, 6, …)
``latency=MS``   wait MS before the first byte (overrides ``latency_ms``)
``chunk_delay=MS`` wait MS between stream chunks (overrides ``chunk_delay_ms``)
``stall=MS``     after the first stream chunk, pause MS, then continue (non-streaming:
                extra delay before the body)
``slow=MS``      with ``slow_rate=R``: a share R of requests wait MS more before the first byte,
                spread evenly (R=0.1: requests 10, 20, 30, …) — tail latency for hedging
``cut=N``        send N stream chunks, then drop the connection without a proper end
                (non-streaming: half the body, then drop)
=============== ===================================================================

``fail_first``/``fail_rate`` without ``fail`` fail with 500. Unknown or malformed directives
are a 400 in the request's dialect. Counting is per full model string and is reset by
``DELETE /_mock/requests``.

Control API rules
-----------------
``POST /_mock/faults`` with ``{"model": "gpt-4o", "format": "anthropic", "fault":
{"fail": 503} | "fail=503+retry_after=1", "count": 2}`` (or a list of them). ``model``
matches the full model name or its base; ``format`` is one of ``openai``, ``azure``,
``anthropic``, ``gemini``, ``tgi``; ``count`` limits how many requests the rule applies to.
The first matching rule overlays the model's own directives.
``GET /_mock/requests`` returns ``{"requests": [{time, method, path, query, format, model,
headers, body}], "counters": {model: n}}`` with secrets redacted. Streams paced with
``chunk_delay`` or ``stall`` also carry ``outcome`` (``completed`` or ``client_gone``, when the
client hung up mid-stream) and ``chunks_sent``.
"""

from sluice.mock.faults import Fault, FaultRule, Plan, parse_model
from sluice.mock.replies import count_input_tokens, count_output_tokens, expected_text_reply, sample_from_schema
from sluice.mock.server import MockServer, create_app, run_mock, start_mock
from sluice.mock.state import MockOptions

__all__ = [
    "Fault",
    "FaultRule",
    "MockOptions",
    "MockServer",
    "Plan",
    "count_input_tokens",
    "count_output_tokens",
    "create_app",
    "expected_text_reply",
    "parse_model",
    "run_mock",
    "sample_from_schema",
    "start_mock",
]
