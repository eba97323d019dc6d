"""Local stand-ins for external systems, speaking their real protocols over real sockets.

* `tests.fakes.whatsapp_cloud`: the WhatsApp Cloud API (reference/whatsapp-cloud-api.md),
  an HTTP server on 127.0.0.1 that also sends signed webhooks to the app. Runs inside
  tests (`FakeCloudAPI`) or standalone (``python -m tests.fakes.whatsapp_cloud``).
* `tests.fakes.webhooks`: webhook payloads, signatures, the background sender, and
  `WebhookRecorder`, a tiny receiver that keeps what it was sent.
"""
