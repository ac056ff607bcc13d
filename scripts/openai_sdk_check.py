"""Points the official OpenAI Python SDK at a running gateway and checks that
each simulated failure raises the SDK's exception class for it, that the
SDK, at its default `max_retries`, never multiplies the gateway's retries,
and that a dead model falls back to its backup (the embedded demo's route
`sim-down` -> `sim`, `sim-backup:gpt-4o-mini`): the SDK sees a 200.

    cargo run --release --example gateway &        # embedded simulator
    pip install openai
    python3 scripts/openai_sdk_check.py http://127.0.0.1:8080/v1

Pass the gateway's own `--max-retries` and `--timeout` when it was started
with other values than the defaults (3 and 60s):

    python3 scripts/openai_sdk_check.py http://127.0.0.1:8080/v1 --max-retries 2 --timeout 20s

Exits non-zero when a case raises the wrong class, or when one SDK call made
more than 1 + --max-retries upstream attempts or took longer than --timeout
plus one second.
"""

import argparse
import re
import sys
import time

import openai


def seconds(duration: str) -> float:
    """A gateway duration (`250ms`, `2s`, `1.5s`, `5m`, `1h`, `1m30s`) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise argparse.ArgumentTypeError(f"not a duration: {duration}")
    return sum(float(n) * units[u] for n, u in parts)


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("base_url", nargs="?", default="http://127.0.0.1:8080/v1")
parser.add_argument("--max-retries", type=int, default=3, help="the gateway's --max-retries")
parser.add_argument("--timeout", type=seconds, default=seconds("60s"), help="the gateway's --timeout")
args = parser.parse_args()

messages = [{"role": "user", "content": "hi"}]
failed = 0

# No retry multiplication: the SDK at its default max_retries (2) against an
# always-503 model. Every response the SDK receives says how many upstream
# attempts the gateway made for it (x-gateway-attempts); their sum is what one
# SDK call cost the upstream.
seen = []


def on_response(response) -> None:
    seen.append(response)


sdk = openai.OpenAI(
    base_url=args.base_url,
    api_key="sk-anything",
    # The SDK's own HTTP client (whichever httpx it is built on), watched.
    http_client=openai.DefaultHttpxClient(event_hooks={"response": [on_response]}),
)
print(f"SDK max_retries={sdk.max_retries}; gateway --max-retries {args.max_retries} --timeout {args.timeout}s")
for n in range(3):
    seen.clear()
    start = time.monotonic()
    try:
        sdk.chat.completions.create(model="sim-down-sdk", messages=messages)
        error = None
    except openai.APIError as e:
        error = e
    elapsed = time.monotonic() - start
    upstream = sum(int(r.headers.get("x-gateway-attempts", "0")) for r in seen)
    headers = [r.headers.get("x-gateway-attempts") for r in seen]
    ok = (
        error is not None
        and None not in headers
        and upstream <= 1 + args.max_retries
        and elapsed <= args.timeout + 1
    )
    failed += not ok
    status = getattr(error, "status_code", None)
    should_retry = seen[-1].headers.get("x-should-retry") if seen else None
    print(
        f"always 503, SDK call {n + 1}: {type(error).__name__} {status} after {elapsed:.1f}s,"
        f" {len(seen)} SDK attempt(s), x-gateway-attempts {headers} = {upstream} upstream attempts,"
        f" x-should-retry: {should_retry} {'ok' if ok else 'WRONG'}"
    )

# Each simulated failure raises the SDK's exception class for it. The SDK's own
# retries are off so that what the gateway answered is what is seen.
client = openai.OpenAI(base_url=args.base_url, api_key="sk-anything", max_retries=0, timeout=120)
cases = [
    ("sim-quota", openai.RateLimitError, "insufficient_quota"),
    ("sim-badkey", openai.AuthenticationError, "invalid_api_key"),
    ("sim-overloaded", openai.InternalServerError, "overloaded"),
    ("sim-reset", openai.InternalServerError, "connection_error"),
]
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

# The breaker: a dead model with no other target opens after min_calls
# failures, then answers 503 circuit_open at once.
for _ in range(12):
    try:
        client.chat.completions.create(model="sim-down-alone", messages=messages)
    except openai.APIStatusError as e:
        last = e
print(f"sim-down-alone after 12 calls: {type(last).__name__} {last.status_code} code={last.body.get('code')}"
      f" retry-after={last.response.headers.get('retry-after')}")
failed += not (isinstance(last, openai.InternalServerError) and last.body.get("code") == "circuit_open")

# Fallback: `sim-down` is dead on `sim`; its route sends it on to the steady
# `sim-backup` as `gpt-4o-mini`. The SDK gets a 200, plain and streamed, and
# the headers name the target that answered.
for stream in (False, True):
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="sim-down", messages=messages, stream=stream
        )
        target = raw.headers.get("x-gateway-target")
        attempts = raw.headers.get("x-gateway-attempts")
        answer = raw.parse()
        if stream:
            chunks = [c for c in answer if c.choices]
            fingerprint = chunks[0].system_fingerprint if chunks else None
            text = "".join(c.choices[0].delta.content or "" for c in chunks)
        else:
            fingerprint = answer.system_fingerprint
            text = answer.choices[0].message.content
        ok = raw.status_code == 200 and target == "sim-backup:gpt-4o-mini" and fingerprint == "sim-backup" and text
        print(f"sim-down{' stream' if stream else ''}: {raw.status_code} x-gateway-target: {target}"
              f" x-gateway-attempts: {attempts} from {fingerprint}: {text!r} {'ok' if ok else 'WRONG'}")
    except openai.APIError as e:
        ok = False
        print(f"sim-down{' stream' if stream else ''}: {type(e).__name__}: {e.message} WRONG")
    failed += not ok

# A healthy model still works, streaming included. The simulator's daily mix
# fails a few calls on purpose, some after their headers (a reset mid-body),
# which no retry can rescue: a healthy model gets three tries here.
def healthy(name, call):
    global failed
    for attempt in range(3):
        try:
            print(f"{name}: {call()}")
            return
        except openai.APIError as e:
            print(f"{name}: try {attempt + 1} met the daily mix: {type(e).__name__}: {e.message}")
    print(f"{name}: WRONG, three calls failed")
    failed += 1


healthy("gpt-4o", lambda: client.chat.completions.create(model="gpt-4o", messages=messages).choices[0].message.content)
healthy("gpt-4o-mini stream", lambda: "".join(
    c.choices[0].delta.content or ""
    for c in client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    if c.choices
))

# A stalled stream ends with an error event, which the SDK raises.
try:
    for _ in client.chat.completions.create(model="sim-stall", messages=messages, stream=True):
        pass
    print("sim-stall: no exception WRONG")
    failed += 1
except openai.APIError as e:
    ok = "idle" in e.message
    failed += not ok
    print(f"sim-stall: {type(e).__name__}: {e.message} {'ok' if ok else 'WRONG'}")

print("FAILED" if failed else "all as expected")
sys.exit(1 if failed else 0)
