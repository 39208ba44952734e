#!/usr/bin/env python3
"""Builds a PutLogs request with the official aliyun-log-python-sdk and prints it as JSON,
without sending anything (the SDK's HTTP call is replaced by a capture).

stdin: {"endpoint", "project", "logstore", "access_key_id", "access_key_secret",
        "version": "v1"|"v4", "region", "compress": bool, "topic", "source",
        "tags": [[k, v]], "logs": [{"time", "ns", "contents": [[k, v]]}],
        "http_date": "Mon, 01 Jan 2024 00:00:00 GMT", "v4_time": [2024, 1, 1, 0, 0, 0]}
stdout: {"method", "url", "headers": {...}, "body_hex"}
"""
import datetime
import json
import sys

import aliyun.log.auth as auth
import aliyun.log.logclient as logclient
from aliyun.log import LogClient, LogItem, PutLogsRequest

spec = json.load(sys.stdin)
seen = []


def capture(self, method, url, params, body, headers):
    seen.append({"method": method, "url": url, "headers": dict(headers), "body_hex": body.hex()})
    return 200, b"", {"x-log-requestid": "captured"}


logclient.LogClient._getHttpResponse = capture
auth.AuthV1._getGMT = staticmethod(lambda: spec["http_date"])
fixed = datetime.datetime(*spec["v4_time"])


class FixedClock(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return fixed


auth.datetime = FixedClock

kwargs = {}
if spec["version"] == "v4":
    kwargs = {"auth_version": "v4", "region": spec["region"]}
client = LogClient(spec["endpoint"], spec["access_key_id"], spec["access_key_secret"], **kwargs)
items = [LogItem(timestamp=l["time"], time_nano_part=l["ns"], contents=[tuple(c) for c in l["contents"]])
         for l in spec["logs"]]
req = PutLogsRequest(project=spec["project"], logstore=spec["logstore"], topic=spec["topic"],
                     source=spec["source"], logitems=items, compress=spec["compress"],
                     logtags=[tuple(t) for t in spec["tags"]])
client.put_logs(req)
json.dump(seen[-1], sys.stdout)
