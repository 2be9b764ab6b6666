"""Tests of primes.py for the seed state (written for mechlab, CC0-1.0): run_tests(state) returns
{"passed": n, "total": m}."""

import contextlib
import io


def _output():
    import primes

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        primes.main()
    return buf.getvalue()


def _checks():
    import primes

    yield lambda: primes.sieve(30) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    yield lambda: primes.sieve(2) == []
    yield lambda: primes.twin_primes([3, 5, 7, 11, 13]) == [(3, 5), (5, 7), (11, 13)]
    yield lambda: primes.goldbach(28, primes.sieve(30)) == (5, 23)
    yield lambda: primes.goldbach(4, [2, 3]) == (2, 2)
    yield lambda: _output().splitlines()[0] == "primes below 100: 25"
    yield lambda: "98 = 19 + 79" in _output()


def run_tests(state):
    if state != "seed":
        return {"passed": 0, "total": 0}
    passed = total = 0
    for check in _checks():
        total += 1
        try:
            passed += bool(check())
        except Exception:
            pass
    return {"passed": passed, "total": total}
