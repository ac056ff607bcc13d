"""Points the official OpenAI Python SDK at a running gateway and checks that
each simulated failure raises the SDK's exception class for it.

    cargo run --release --example gateway &        # embedded simulator
    pip install openai
    python3 scripts/openai_sdk_check.py http://127.0.0.1:8080/v1

Exits non-zero when a case raises the wrong class.
"""

import sys
import time

import openai

base_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/v1"
# The SDK's own retries are off so that what the gateway answered is what is seen.
client = openai.OpenAI(base_url=base_url, api_key="sk-anything", max_retries=0, timeout=120)
messages = [{"role": "user", "content": "hi"}]

cases = [
    ("sim-quota", openai.RateLimitError, "insufficient_quota"),
    ("sim-badkey", openai.AuthenticationError, "invalid_api_key"),
    ("sim-overloaded", openai.InternalServerError, "overloaded"),
    ("sim-reset", openai.InternalServerError, "connection_error"),
]
failed = 0
for model, expected, code in cases:
    try:
        client.chat.completions.create(model=model, messages=messages)
        print(f"{model}: no exception")
        failed += 1
    except openai.APIStatusError as e:
        got_code = (e.body or {}).get("code") if isinstance(e.body, dict) else None
        ok = isinstance(e, expected) and got_code == code
        failed += not ok
        print(f"{model}: {type(e).__name__} {e.status_code} code={got_code} request_id={e.request_id}"
              f" {'ok' if ok else 'WRONG, expected ' + expected.__name__ + ' ' + code}")

# The breaker: a dead model opens after min_calls failures, then answers 503 circuit_open at once.
for _ in range(12):
    try:
        client.chat.completions.create(model="sim-down", messages=messages)
    except openai.APIStatusError as e:
        last = e
print(f"sim-down after 12 calls: {type(last).__name__} {last.status_code} code={last.body.get('code')}"
      f" retry-after={last.response.headers.get('retry-after')}")
failed += not (isinstance(last, openai.InternalServerError) and last.body.get("code") == "circuit_open")

# A healthy model still works, streaming included.
reply = client.chat.completions.create(model="gpt-4o", messages=messages)
print("gpt-4o:", reply.choices[0].message.content)
chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
print("gpt-4o-mini stream:", "".join(c.choices[0].delta.content or "" for c in chunks if c.choices))

# A stalled stream ends with an error event, which the SDK raises.
try:
    for _ in client.chat.completions.create(model="sim-stall", messages=messages, stream=True):
        pass
    print("sim-stall: no exception")
    failed += 1
except openai.APIError as e:
    print(f"sim-stall: {type(e).__name__}: {e.message}")

print("FAILED" if failed else "all as expected")
sys.exit(1 if failed else 0)
