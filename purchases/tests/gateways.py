"""Gateways for tests: the sandbox with a call log, and one that fails in unexpected ways."""

from purchases.gateways import SandboxGateway

calls = []


class RecordingSandboxGateway(SandboxGateway):
    """The sandbox, recording every call in `calls` as (method, reference, number)."""

    def recharge(self, request):
        calls.append(("recharge", request.reference, request.mobile_number))
        return super().recharge(request)

    def check_status(self, request):
        calls.append(("check_status", request.reference, request.mobile_number))
        return super().check_status(request)


class ExplodingGateway(SandboxGateway):
    """A gateway with a bug: every call raises something no gateway contract mentions."""

    def recharge(self, request):
        raise RuntimeError("unexpected aggregator payload")

    def check_status(self, request):
        raise RuntimeError("unexpected aggregator payload")


def recharges():
    return [call for call in calls if call[0] == "recharge"]
