"""Send a signed WhatsApp webhook (an inbound text) to a running Woffice, as Meta would.

Usage (with `make run` serving on 127.0.0.1:5000):

    .venv/bin/python scripts/send_demo_webhook.py "Hi, is the order ready?"
    .venv/bin/python scripts/send_demo_webhook.py STOP --from 919800000105

Defaults are the demo tenant Acme Traders (phone number id 100000000000001, app secret
acme-demo-app-secret). The body is signed with HMAC-SHA256 over the exact bytes sent
(header X-Hub-Signature-256), so the app accepts it; pass --secret to see a refusal.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import time
import uuid

import httpx


def build_payload(phone_number_id: str, sender: str, name: str, text: str) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "912226543210", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": name}, "wa_id": sender}],
        "messages": [
            {
                "from": sender,
                "id": f"wamid.demo-{uuid.uuid4().hex}",
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA-DEMO", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(body).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text")
    parser.add_argument("--url", default="http://127.0.0.1:5000/webhooks/whatsapp")
    parser.add_argument("--phone-number-id", default="100000000000001")
    parser.add_argument("--secret", default="acme-demo-app-secret")
    parser.add_argument("--from", dest="sender", default="919812345678")
    parser.add_argument("--name", default="Demo Customer")
    args = parser.parse_args()
    raw = build_payload(args.phone_number_id, args.sender, args.name, args.text)
    signature = hmac.new(args.secret.encode(), raw, hashlib.sha256).hexdigest()
    response = httpx.post(
        args.url,
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": f"sha256={signature}",
        },
    )
    print(response.status_code, response.text[:200])


if __name__ == "__main__":
    main()
