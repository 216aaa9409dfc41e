import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from accounts import sms


@pytest.fixture
def gateway():
    """A local HTTP SMS gateway that records what it receives and answers with `status`."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        status = 200

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(Handler.status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, Handler, received
    server.shutdown()
    server.server_close()


def test_locmem_backend_keeps_messages_in_the_outbox(sms_outbox):
    sms.send_sms(to="+919999999999", body="hello")
    assert sms_outbox == [sms.SmsMessage(to="+919999999999", body="hello")]


def test_console_backend_logs_the_message(settings, caplog):
    settings.SMS_BACKEND = "accounts.sms.ConsoleSmsBackend"
    with caplog.at_level("INFO", logger="accounts.sms"):
        sms.send_sms(to="+919999999999", body="code 123456")
    assert "code 123456" in caplog.text


def test_http_backend_posts_json_with_the_token(settings, gateway):
    server, _, received = gateway
    settings.SMS_BACKEND = "accounts.sms.HttpSmsBackend"
    settings.SMS_HTTP_URL = f"http://127.0.0.1:{server.server_port}/send"
    settings.SMS_HTTP_TOKEN = "s3cret"
    sms.send_sms(to="+919999999999", body="code 123456")
    assert received[0]["body"] == {"to": "+919999999999", "message": "code 123456"}
    assert received[0]["headers"]["Authorization"] == "Bearer s3cret"


def test_http_backend_raises_on_a_gateway_error(settings, gateway):
    server, handler, _ = gateway
    handler.status = 500
    settings.SMS_BACKEND = "accounts.sms.HttpSmsBackend"
    settings.SMS_HTTP_URL = f"http://127.0.0.1:{server.server_port}/send"
    with pytest.raises(sms.SmsDeliveryFailed):
        sms.send_sms(to="+919999999999", body="x")


def test_http_backend_refuses_a_non_http_url(settings):
    settings.SMS_BACKEND = "accounts.sms.HttpSmsBackend"
    settings.SMS_HTTP_URL = "file:///etc/passwd"
    with pytest.raises(sms.SmsDeliveryFailed):
        sms.send_sms(to="+919999999999", body="x")
