"""Small number-theory report: primes, twin primes and Goldbach pairs below a limit."""


def sieve(limit):
    """All primes below limit (sieve of Eratosthenes)."""
    is_prime = [True] * limit
    is_prime[0:2] = [False, False]
    for n in range(2, int(limit**0.5) + 1):
        if is_prime[n]:
            for multiple in range(n * n, limit, n):
                is_prime[multiple] = False
    return [n for n in range(limit) if is_prime[n]]


def twin_primes(primes):
    """Pairs (p, p + 2) of primes."""
    found = set(primes)
    return [(p, p + 2) for p in primes if p + 2 in found]


def goldbach(n, primes):
    """The first way to write the even number n as a sum of two primes."""
    found = set(primes)
    for p in primes:
        if n - p in found:
            return p, n - p
    return None


def main():
    primes = sieve(100)
    print("primes below 100:", len(primes))
    print("largest:", primes[-1])
    print("twin pairs:", len(twin_primes(primes)))
    for even in (4, 28, 98):
        p, q = goldbach(even, primes)
        print(f"{even} = {p} + {q}")
    print("sum of the first ten:", sum(primes[:10]))


if __name__ == "__main__":
    main()
