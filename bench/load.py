"""The load generator: one scenario at one concurrency level, for a fixed time, over HTTP.

    python bench/load.py --fixture F --scenario transfers --concurrency 8 --duration 10

Runs in its own process (bench/run.py starts one per measurement) so its CPU is not the server's
GIL. `concurrency` clients loop closed: each sends a request, waits for the answer, sends the next.
A request counts once it has been answered; any status other than the scenario's expected one, or
a connection error, is an error (the first few are printed). Prints one JSON object on stdout:
requests, errors, seconds, rps and latency percentiles in milliseconds.
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import random
import time
import uuid

import aiohttp

PERCENTILES = (50, 95, 99)
WARMUP_SECONDS = 1.0


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


class Scenarios:
    """What one request of each scenario is: (method, path, headers, json body, expected status).

    The fixture says where: the project's fixture and the naive twin's carry the same people (tokens
    of their own) and their own paths; `keyed` says whether money requests carry an Idempotency-Key
    (the project's do, as a real client's; the twin has none)."""

    def __init__(self, fixture):
        self.f = fixture
        self.rng = random.Random()

    def _money_headers(self, token, *, keyed=None):
        headers = _bearer(token)
        if self.f.get("keyed", True) if keyed is None else keyed:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        return headers

    def floor(self):
        # Anonymous, one `SELECT 1`, the whole middleware stack and DRF's dispatch: what any request of
        # this stack costs on this machine, with nothing of ours to make cheaper.
        return "GET", "/api/health/", {}, None, 200

    def balance(self):
        token = self.rng.choice(self.f["client_tokens"])
        return "GET", self.f["paths"]["balance"], _bearer(token), None, 200

    def transfers(self, keyed=None):
        sender, receiver = self.rng.sample(range(len(self.f["client_tokens"])), 2)
        body = {"to_phone_number": self.f["client_phones"][receiver], "amount": "1.00", "remarks": "bench"}
        headers = self._money_headers(self.f["client_tokens"][sender], keyed=keyed)
        return "POST", self.f["paths"]["transfer"], headers, body, 201

    def transfers_unkeyed(self):
        return self.transfers(keyed=False)

    def hot_wallet(self):
        body = {
            "to_phone_number": self.rng.choice(self.f["hot_retailer_phones"]),
            "amount": "1.00",
            "remarks": "payout",
        }
        headers = self._money_headers(self.f["hot_distributor_token"])
        return "POST", self.f["paths"]["transfer"], headers, body, 201

    def purchases(self):
        body = {"plan_id": self.rng.choice(self.f["plan_ids"]), "mobile_number": f"98{self.rng.randrange(10**8):08d}"}
        headers = self._money_headers(self.rng.choice(self.f["retailer_tokens"]))
        return "POST", "/api/purchases/purchase/", headers, body, self.f.get("purchase_status", 202)

    def plans(self):
        query = self.rng.choice(self.f["plan_queries"])
        return "GET", f"/api/plans/plans/?{query}", _bearer(self.rng.choice(self.f["client_tokens"])), None, 200

    def wallets(self):
        return "GET", self.f["paths"]["wallets"], _bearer(self.rng.choice(self.f["retailer_tokens"])), None, 200

    def funding(self):
        body = {"user_email": self.rng.choice(self.f["client_emails"]), "amount": "1.00", "description": "bench"}
        return "POST", self.f["paths"]["funding"], self._money_headers(self.f["admin_token"]), body, 201

    def payouts(self):
        body = {"lines": self.f["payout_lines"], "remarks": "bench payout"}
        headers = self._money_headers(self.f["hot_distributor_token"], keyed=True)
        return "POST", "/api/wallet/payouts/", headers, body, 201

    def topups(self):
        """The first request of a top-up (the whole flow is `topup_client`): open an intent."""
        headers = self._money_headers(self.rng.choice(self.f["client_tokens"]))
        return "POST", "/api/wallet/topups/", headers, {"amount": "1.00"}, 201

    def history_first(self):
        path = self.f["history_first_path"]
        return "GET", path, _bearer(self.f["busy_wallet_token"]), None, 200

    def history_deep(self):
        path = self.rng.choice(self.f["history_deep_paths"])
        return "GET", path, _bearer(self.f["busy_wallet_token"]), None, 200


async def client(session, base_url, make, deadline, measure_from, latencies, errors, samples, ok_total):
    while True:
        method, path, headers, body, expected = make()
        started = time.perf_counter()
        if started >= deadline:
            return
        try:
            async with session.request(method, base_url + path, headers=headers, json=body) as response:
                payload = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            status, payload = None, repr(exc).encode()
        finished = time.perf_counter()
        if status == expected:
            ok_total.append(1)  # warm-up included: the money check compares every success with the journal
        if started < measure_from:
            continue
        latencies.append(finished - started)
        if status != expected:
            errors.append(status)
            if len(samples) < 5:
                samples.append(f"{method} {path} -> {status}: {payload[:300].decode(errors='replace')}")


def _signed_webhook(secret, top_up):
    """The webhook the payment provider sends when a payment succeeds (payments.sandbox's shape),
    signed like core.signatures: X-Signature t=<unix>,v1=HMAC-SHA256(secret, "<t>.<raw body>")."""
    event = {
        "id": f"evt_bench_{uuid.uuid4().hex}",
        "type": "payment.succeeded",
        "created": int(time.time()),
        "data": {
            "reference": top_up["provider_reference"],
            "merchant_reference": f"T{top_up['id']}",
            "status": "SUCCEEDED",
            "amount": top_up["amount"],
            "currency": top_up["currency"],
        },
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Signature": f"t={stamp},v1={mac}"}


async def topup_client(session, base_url, fixture, rng, deadline, measure_from, results):
    """One payer after another adds 1.00: open the intent (keyed), pay at the sandbox's payment URL
    (the sandbox records it; its own webhook is held back so that the provider's role is played here,
    where its timing is known), the provider's signed webhook, then the payer reads its balance. A top-up
    counts once the webhook answered `applied` and the balance was read; `credit` is webhook sent ->
    balance answered, the latency the issue asks for."""
    latencies, credit, errors, samples, ok_total = results
    secret = fixture["webhook_secret"]

    async def call(method, path, headers, body=None, data=None):
        async with session.request(method, base_url + path, headers=headers, json=body, data=data) as response:
            return response.status, await response.read()

    while True:
        token = rng.choice(fixture["client_tokens"])
        auth = _bearer(token)
        started = time.perf_counter()
        if started >= deadline:
            return
        step = "intent"
        try:
            status, payload = await call(
                "POST", "/api/wallet/topups/", {**auth, "Idempotency-Key": uuid.uuid4().hex}, {"amount": "1.00"}
            )
            if status == 201:
                top_up = json.loads(payload)
                step = "sandbox payment"
                sandbox_path = f"/api/wallet/topups/sandbox/{top_up['provider_reference']}/"
                status, payload = await call("POST", sandbox_path, {}, {"outcome": "succeeded_silently"})
            if status == 200 and step == "sandbox payment":
                step = "webhook"
                body, headers = _signed_webhook(secret, top_up)
                sent = time.perf_counter()
                status, payload = await call("POST", "/api/wallet/topups/webhooks/sandbox/", headers, data=body)
                if status == 200 and not json.loads(payload).get("applied"):
                    status = "not applied"
            if status == 200 and step == "webhook":
                step = "balance"
                status, payload = await call("GET", "/api/wallet/balance/", auth)
        except (TimeoutError, aiohttp.ClientError) as exc:
            status, payload = None, repr(exc).encode()
        finished = time.perf_counter()
        done = status == 200 and step == "balance"
        if done:
            ok_total.append(1)
        if started < measure_from:
            continue
        latencies.append(finished - started)
        if done:
            credit.append(finished - sent)
        else:
            errors.append(status)
            if len(samples) < 5:
                samples.append(f"top-up, {step} -> {status}: {payload[:300].decode(errors='replace')}")


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


async def run(args):
    with open(args.fixture) as handle:
        fixture = json.load(handle)
    make = getattr(Scenarios(fixture), args.scenario)
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=args.no_keepalive)
    timeout = aiohttp.ClientTimeout(total=60)
    latencies, errors, samples, ok_total, credit = [], [], [], [], []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        measure_from = time.perf_counter() + WARMUP_SECONDS
        deadline = measure_from + args.duration
        if args.scenario == "topups":
            rng = random.Random()
            clients = (
                topup_client(
                    session,
                    fixture["base_url"],
                    fixture,
                    rng,
                    deadline,
                    measure_from,
                    (latencies, credit, errors, samples, ok_total),
                )
                for _ in range(args.concurrency)
            )
        else:
            clients = (
                client(session, fixture["base_url"], make, deadline, measure_from, latencies, errors, samples, ok_total)
                for _ in range(args.concurrency)
            )
        await asyncio.gather(*clients)
    latencies.sort()
    credit.sort()
    result = {
        "scenario": args.scenario,
        "concurrency": args.concurrency,
        "seconds": args.duration,
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / args.duration,
        **{f"p{p}_ms": (percentile(latencies, p) or 0) * 1000 for p in PERCENTILES},
        "succeeded_including_warmup": len(ok_total),
        **({f"credit_p{p}_ms": (percentile(credit, p) or 0) * 1000 for p in PERCENTILES} if credit else {}),
        "error_samples": samples,
    }
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", required=True, help="JSON written by bench/run.py: base_url, tokens, targets")
    parser.add_argument("--scenario", required=True, choices=[n for n in vars(Scenarios) if not n.startswith("_")])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (after a 1 s warm-up)")
    parser.add_argument("--no-keepalive", action="store_true", help="a new connection per request")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
