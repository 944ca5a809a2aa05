"""What the OpenAI and Anthropic wrappers add to a model call, paired with direct calls.

End to end: the real ``openai`` and ``anthropic`` SDKs call the fake
provider of ``tests/fakeprovider.py`` on 127.0.0.1, one plain client and one
wrapped, their rounds interleaved; wall time per call. The provider's round
trip (~1 ms over loopback HTTP) dwarfs and blurs the wrapper, so its own
cost is also taken alone: the same wrapper around a stub ``create`` that
returns a real SDK response (from one call to the fake), against the stub
called directly, rounds interleaved. Records go to a live ``banyan serve``
(flusher running); each call is timed with ``perf_counter_ns``, timer
overhead subtracted.

Needs ``openai`` and ``anthropic``, so it is not in ``benchmarks.run``'s suite.

Run: ``python -m benchmarks.wrapper_overhead`` -> benchmarks/results/wrapper_overhead.json and .png
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import banyan
from banyan import _localserver
from banyan.integrations import anthropic as banyan_anthropic
from banyan.integrations import openai as banyan_openai
from benchmarks._plot import RESULTS, bars, write_json
from benchmarks._timing import timer_overhead

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import fakeprovider  # the tests' fake provider, found through the path above

ROUNDS = 20
CALLS = 25
STUB_CALLS = 2_000
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "where is my order " * 10}]  # fmt: skip


def sdk_calls(url: str) -> dict[str, tuple[Any, Callable[[Any], Any], Callable[..., Any]]]:
    """Per provider: a plain client, its create call, and how to wrap a client."""
    import anthropic
    import openai

    def chat(client: Any) -> Any:
        return client.chat.completions.create(model="m-1", messages=MESSAGES)

    def message(client: Any) -> Any:
        return client.messages.create(model="m-1", max_tokens=64, messages=MESSAGES[1:])

    return {
        "openai": (lambda: openai.OpenAI(api_key="sk", base_url=f"{url}/v1", max_retries=0),
                   chat, banyan_openai.wrap),
        "anthropic": (lambda: anthropic.Anthropic(api_key="sk", base_url=url, max_retries=0),
                      message, banyan_anthropic.wrap),
    }  # fmt: skip


def stub_client(provider: str, response: Any) -> Any:
    """An object shaped like the SDK client whose ``create`` returns ``response`` at once."""
    create = lambda **kwargs: response  # noqa: E731 - the smallest callable stand-in
    if provider == "openai":
        return SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    return SimpleNamespace(messages=SimpleNamespace(create=create))


def timed(fn: Callable[[], Any], calls: int, out: list[float], overhead: int) -> None:
    """Append ``calls`` per-call times of ``fn`` in ns to ``out``."""
    clock = time.perf_counter_ns
    gc.disable()
    for _ in range(calls):
        t0 = clock()
        fn()
        out.append(clock() - t0 - overhead)
    gc.enable()


def measure(url: str, logger: banyan.PromptStackLogger, overhead: int) -> dict[str, list[float]]:
    """Samples per case: ``<provider> direct|wrapped`` over the network and with the stub."""
    samples: dict[str, list[float]] = {}
    pairs: list[tuple[str, Callable[[], Any], Callable[[], Any], int]] = []
    for provider, (make, create, wrap) in sdk_calls(url).items():
        plain, wrapped = make(), wrap(make(), logger=logger)
        stub = stub_client(provider, create(plain))
        wrapped_stub = wrap(stub_client(provider, create(plain)), logger=logger)
        pairs.append((f"{provider} call", lambda c=create, p=plain: c(p),
                      lambda c=create, w=wrapped: c(w), CALLS))  # fmt: skip
        pairs.append((f"{provider} stub", lambda c=create, s=stub: c(s),
                      lambda c=create, w=wrapped_stub: c(w), STUB_CALLS))  # fmt: skip
    for _ in range(ROUNDS):
        for name, direct, wrapped_call, calls in pairs:
            timed(direct, calls, samples.setdefault(f"{name} direct", []), overhead)
            timed(wrapped_call, calls, samples.setdefault(f"{name} wrapped", []), overhead)
        logger.flush(30)
    return samples


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_ns": statistics.median(ordered), "p99_ns": ordered[int(len(ordered) * 0.99)],
            "calls": len(ordered)}  # fmt: skip


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="wrapper-overhead-"))
    server = _localserver.start(tmp)
    try:
        logger = banyan.PromptStackLogger(server.api_key, server.base_url,
                                          spool_dir=str(tmp / "spool"))  # fmt: skip
        with fakeprovider.running() as fake:
            cases = {k: summary(v) for k, v in measure(fake.url, logger, timer_overhead()).items()}
        logger.shutdown(30)
        stored = server.summary()["stored"]
    finally:
        server.stop()
    added = {
        name.removesuffix(" direct"): cases[f"{name.removesuffix(' direct')} wrapped"]["median_ns"]
        - value["median_ns"]
        for name, value in cases.items() if name.endswith(" direct")
    }  # fmt: skip
    result = {"rounds": ROUNDS, "cases": cases, "added_median_ns": added, "records_stored": stored}
    path = write_json("wrapper_overhead", result)
    labels = list(cases)
    bars(RESULTS / "wrapper_overhead.png", labels, [cases[k]["median_ns"] / 1000 for k in labels],
         title="model call, direct vs wrapped (median)", ylabel="us per call", log=True,
         groups=[k.rsplit(" ", 1)[1] for k in labels], fmt="{:,.1f}")  # fmt: skip
    print(f"{path}: added per call (median, ns): {added}; records stored: {stored}")


if __name__ == "__main__":
    main()
