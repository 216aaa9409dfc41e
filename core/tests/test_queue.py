"""core.queue: a message the broker cannot take is logged for operators, and the caller goes on."""

import logging

from kombu.exceptions import OperationalError

from core.queue import enqueue_now


class Task:
    name = "tests.some_task"

    def __init__(self, error):
        self.error = error

    def apply_async(self, kwargs):
        raise self.error


def test_a_broker_that_is_down_is_one_line_per_message_not_a_traceback(caplog):
    caplog.set_level(logging.WARNING, logger="core.queue")
    error = OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    assert enqueue_now(Task(error), purchase_id=7) is False
    (record,) = caplog.records
    assert not record.exc_info
    assert "tests.some_task({'purchase_id': 7})" in record.getMessage()
    assert "Connection refused" in record.getMessage()


def test_a_socket_error_is_the_broker_unreachable_too(caplog):
    caplog.set_level(logging.WARNING, logger="core.queue")
    assert enqueue_now(Task(ConnectionRefusedError("refused")), purchase_id=8) is False
    (record,) = caplog.records
    assert not record.exc_info


def test_anything_else_keeps_its_traceback(caplog):
    caplog.set_level(logging.WARNING, logger="core.queue")
    assert enqueue_now(Task(TypeError("Object of type Decimal is not JSON serializable")), purchase_id=9) is False
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is TypeError


def test_a_broken_configuration_is_not_taken_for_an_outage(caplog):
    caplog.set_level(logging.WARNING, logger="core.queue")
    missing = FileNotFoundError(2, "No such file or directory", "/etc/ssl/broker-ca.pem")
    assert enqueue_now(Task(missing), purchase_id=10) is False
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is FileNotFoundError
