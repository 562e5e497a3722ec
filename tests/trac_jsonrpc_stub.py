"""A stand-in for the TracXMLRPC plugin's JSON-RPC, loaded into the test tracd on demand.

TracXMLRPC does not load on Python 3 here, so the client's JSON-RPC path is tested
against this single-file plugin instead: the same URL (`/login/jsonrpc`), request
and reply shapes ({"method", "params", "id"} -> {"result", "error", "id"}) and
datetime encoding ({"__jsonclass__": ["datetime", "YYYY-MM-DDTHH:MM:SS"]}, UTC),
answering `system.getAPIVersion` and `ticket.changeLog` from Trac's real ticket model.
tests/integration/test_trac_client.py copies it into ENV/plugins for one test.
"""

import json

from trac.core import Component, implements
from trac.ticket.model import Ticket
from trac.util.datefmt import utc
from trac.web.api import IRequestHandler


def _encode(value):
    if hasattr(value, "astimezone"):
        moment = value.astimezone(utc).strftime("%Y-%m-%dT%H:%M:%S")
        return {"__jsonclass__": ["datetime", moment]}
    raise TypeError(repr(value))


class JsonRpcStub(Component):
    implements(IRequestHandler)

    def match_request(self, req):
        return req.path_info in ("/jsonrpc", "/login/jsonrpc")

    def process_request(self, req):
        call = json.loads(req.read())
        method, params = call.get("method"), call.get("params") or []
        reply = {"id": call.get("id"), "result": None, "error": None}
        if method == "system.getAPIVersion":
            reply["result"] = [0, 1, 2]
        elif method == "ticket.changeLog":
            req.perm.require("TICKET_VIEW")
            log = Ticket(self.env, int(params[0])).get_changelog()
            reply["result"] = [list(entry) for entry in log]
        else:
            reply["error"] = {"code": -32601, "message": f"unknown method {method}"}
        body = json.dumps(reply, default=_encode).encode("utf-8")
        req.send(body, "application/json")
