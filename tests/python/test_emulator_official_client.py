"""The project's Pub/Sub emulator, exercised by Google's official client over REST.

An independent implementation proves the emulator faithful: google-cloud-pubsub with
transport="rest" creates topics and subscriptions, publishes (with attributes and an ordering
key), pulls, modifies ack deadlines and acknowledges. The emulator runs as the standalone
`dualpub emulator` process, as it would for the Kotlin suite or a developer.
"""

import base64
import gzip
import json
import os
import subprocess
import time
import urllib.request

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("DUALPUB_BIN", os.path.join(ROOT, "target", "debug", "dualpub"))
PROJECT = "py-project"


@pytest.fixture(scope="module")
def endpoint():
    proc = subprocess.Popen([BIN, "emulator", "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert "listening on " in line, line
        yield line.split("listening on ")[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def clients(endpoint):
    opts = ClientOptions(api_endpoint=endpoint)
    creds = AnonymousCredentials()
    # Not enable_message_ordering: with it, this client version's ordered sequencer sends with
    # a read timeout of 2**32 s, which Python's socket layer turns into an immediate timeout
    # (seen here: the emulator had stored the message). Ordering keys are exercised over plain
    # REST below and read back through the official subscriber.
    publisher = pubsub_v1.PublisherClient(transport="rest", client_options=opts, credentials=creds)
    subscriber = pubsub_v1.SubscriberClient(transport="rest", client_options=opts, credentials=creds)
    return publisher, subscriber


def pull_all(subscriber, sub_path, want, timeout=15):
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        resp = subscriber.pull(request={"subscription": sub_path, "max_messages": 100}, timeout=10)
        got.extend(resp.received_messages)
    return got


def test_topics_and_subscriptions_lifecycle(endpoint):
    publisher, subscriber = clients(endpoint)
    topic = publisher.topic_path(PROJECT, "lifecycle")
    created = publisher.create_topic(request={"name": topic})
    assert created.name == topic
    # Over REST, api_core maps HTTP 409 to Conflict (the parent of AlreadyExists), as it would
    # against the real service.
    with pytest.raises(exceptions.Conflict):
        publisher.create_topic(request={"name": topic})
    assert publisher.get_topic(request={"topic": topic}).name == topic
    names = [t.name for t in publisher.list_topics(request={"project": f"projects/{PROJECT}"})]
    assert topic in names

    sub = subscriber.subscription_path(PROJECT, "lifecycle-sub")
    s = subscriber.create_subscription(request={"name": sub, "topic": topic, "ack_deadline_seconds": 20})
    assert (s.name, s.topic, s.ack_deadline_seconds) == (sub, topic, 20)
    assert subscriber.get_subscription(request={"subscription": sub}).topic == topic
    subs = [x.name for x in subscriber.list_subscriptions(request={"project": f"projects/{PROJECT}"})]
    assert sub in subs

    subscriber.delete_subscription(request={"subscription": sub})
    with pytest.raises(exceptions.NotFound):
        subscriber.get_subscription(request={"subscription": sub})
    publisher.delete_topic(request={"topic": topic})
    with pytest.raises(exceptions.NotFound):
        publisher.get_topic(request={"topic": topic})


def test_publish_pull_acknowledge_with_attributes_and_ordering(endpoint):
    publisher, subscriber = clients(endpoint)
    topic = publisher.topic_path(PROJECT, "locations")
    publisher.create_topic(request={"name": topic})
    sub = subscriber.subscription_path(PROJECT, "locations-sub")
    subscriber.create_subscription(request={"name": sub, "topic": topic, "enable_message_ordering": True})

    payloads = [json.dumps({"eventId": f"e-{i}", "deviceId": "d-1", "n": i}).encode() for i in range(20)]
    futures = [
        publisher.publish(topic, p, deviceId="d-1", eventId=f"e-{i}", priority="normal")
        for i, p in enumerate(payloads)
    ]
    ids = [f.result(timeout=15) for f in futures]
    assert all(i.isdigit() for i in ids) and len(set(ids)) == 20

    received = pull_all(subscriber, sub, 20)
    assert [m.message.data for m in received] == payloads, "order and bytes preserved"
    first = received[0].message
    assert first.attributes["deviceId"] == "d-1" and first.attributes["eventId"] == "e-0"
    assert first.message_id == ids[0]
    assert first.publish_time.year >= 2024
    subscriber.acknowledge(request={"subscription": sub, "ack_ids": [m.ack_id for m in received]})

    # An ordering key, as the SDK sends it, read back by the official subscriber.
    code, body = post(f"{endpoint}/v1/{topic}:publish",
                      {"messages": [{"data": base64.b64encode(b"k").decode(), "orderingKey": "d-1"}]})
    assert code == 200, body
    keyed = pull_all(subscriber, sub, 1)
    assert [m.message.ordering_key for m in keyed] == ["d-1"]
    subscriber.acknowledge(request={"subscription": sub, "ack_ids": [keyed[0].ack_id]})
    again = subscriber.pull(request={"subscription": sub, "max_messages": 10}, timeout=10)
    assert len(again.received_messages) == 0, "acknowledged messages are not redelivered"


def test_unacknowledged_messages_are_redelivered_and_nack_is_immediate(endpoint):
    publisher, subscriber = clients(endpoint)
    topic = publisher.topic_path(PROJECT, "redelivery")
    publisher.create_topic(request={"name": topic})
    sub = subscriber.subscription_path(PROJECT, "redelivery-sub")
    subscriber.create_subscription(request={"name": sub, "topic": topic, "ack_deadline_seconds": 10})
    publisher.publish(topic, b"again").result(timeout=15)
    first = pull_all(subscriber, sub, 1)
    assert len(first) == 1
    # A deadline of 0 is a nack: the message comes straight back, with the same messageId.
    subscriber.modify_ack_deadline(request={"subscription": sub, "ack_ids": [first[0].ack_id], "ack_deadline_seconds": 0})
    second = pull_all(subscriber, sub, 1)
    assert [m.message.message_id for m in second] == [first[0].message.message_id]
    assert second[0].delivery_attempt == 2
    subscriber.acknowledge(request={"subscription": sub, "ack_ids": [second[0].ack_id]})


def test_errors_are_google_rpc_status(endpoint):
    publisher, _ = clients(endpoint)
    with pytest.raises(exceptions.NotFound):
        publisher.get_topic(request={"topic": publisher.topic_path(PROJECT, "missing")})
    code, err = post(f"{endpoint}/v1/projects/p/topics/nope:publish", {"messages": [{"data": "eA=="}]})
    assert code == 404
    assert err["error"]["code"] == 404 and err["error"]["status"] == "NOT_FOUND" and err["error"]["message"]


def post(url, body, compressed=False):
    data = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if compressed:
        data, headers["content-encoding"] = gzip.compress(data), "gzip"
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_the_official_client_reads_messages_published_with_a_gzip_body(endpoint):
    """A request body the way the SDK sends a large batch (gzip, docs/CONTRACT.md#compression):
    the official subscriber reads back every message, bytes and attributes unchanged."""
    publisher, subscriber = clients(endpoint)
    topic = publisher.topic_path(PROJECT, "gzipped")
    publisher.create_topic(request={"name": topic})
    sub = subscriber.subscription_path(PROJECT, "gzipped-sub")
    subscriber.create_subscription(request={"name": sub, "topic": topic})
    with urllib.request.urlopen(f"{endpoint}/emulator/stats") as r:
        before = json.loads(r.read())["gzipRequests"]
    payloads = [json.dumps({"eventId": f"e-{i}", "deviceId": "d-1", "seq": i + 1}, separators=(",", ":")).encode() for i in range(30)]
    messages = [{"data": base64.b64encode(p).decode(), "attributes": {"deviceId": "d-1", "eventId": f"e-{i}"}, "orderingKey": "d-1"}
                for i, p in enumerate(payloads)]
    code, body = post(f"{endpoint}/v1/{topic}:publish", {"messages": messages}, compressed=True)
    assert code == 200 and len(body["messageIds"]) == 30, body
    with urllib.request.urlopen(f"{endpoint}/emulator/stats") as r:
        assert json.loads(r.read())["gzipRequests"] == before + 1, "the body went compressed"
    received = pull_all(subscriber, sub, 30)
    assert sorted(m.message.data for m in received) == sorted(payloads)
    for m in received:
        i = payloads.index(m.message.data)
        assert dict(m.message.attributes) == {"deviceId": "d-1", "eventId": f"e-{i}"}
        assert m.message.ordering_key == "d-1"
    subscriber.acknowledge(request={"subscription": sub, "ack_ids": [m.ack_id for m in received]})
    # A body that says gzip but is not: refused as Pub/Sub refuses a bad body, nothing stored.
    req = urllib.request.Request(f"{endpoint}/v1/{topic}:publish", data=b"{not gzip", method="POST",
                                 headers={"content-type": "application/json", "content-encoding": "gzip"})
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(req)
    assert bad.value.code == 400
    assert subscriber.pull(request={"subscription": sub, "max_messages": 10}, timeout=10).received_messages == []


def put(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.status


def test_documented_limits_are_enforced(endpoint):
    t = f"{endpoint}/v1/projects/{PROJECT}/topics/limits"
    assert put(t, {}) == 200
    cases = [
        ({"messages": []}, "INVALID_ARGUMENT"),
        ({"messages": [{"data": "eA=="}] * 1001}, "INVALID_ARGUMENT"),
        ({"messages": [{}]}, "INVALID_ARGUMENT"),
        ({"messages": [{"data": "eA==", "attributes": {f"k{i}": "v" for i in range(101)}}]}, "INVALID_ARGUMENT"),
        ({"messages": [{"data": "eA==", "attributes": {"k" * 257: "v"}}]}, "INVALID_ARGUMENT"),
        ({"messages": [{"data": "eA==", "attributes": {"k": "v" * 1025}}]}, "INVALID_ARGUMENT"),
        ({"messages": [{"data": "eA==", "orderingKey": "a"}, {"data": "eA==", "orderingKey": "b"}]}, "FAILED_PRECONDITION"),
        ({"messages": [{"data": "!!!not base64!!!"}]}, "INVALID_ARGUMENT"),
    ]
    for body, status in cases:
        code, err = post(f"{t}:publish", body)
        assert code == 400 and err["error"]["status"] == status, (body if len(str(body)) < 200 else "big", code, err)
    big = base64.b64encode(b"x" * 10_000_001).decode()
    code, err = post(f"{t}:publish", {"messages": [{"data": big}]})
    assert code == 400, code
    # Both base64 alphabets are accepted; standard is emitted.
    url_safe = base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode()
    code, ok = post(f"{t}:publish?$alt=json;enum-encoding=int", {"messages": [{"data": url_safe}]})
    assert code == 200 and ok["messageIds"][0].isdigit()


def test_fault_injection_and_bearer_tokens():
    proc = subprocess.Popen([BIN, "emulator", "--port", "0", "--bearer-token", "secret"], stdout=subprocess.PIPE, text=True)
    try:
        ep = proc.stdout.readline().strip().split("listening on ")[1]
        t = f"{ep}/v1/projects/{PROJECT}/topics/faults"
        code, err = post(f"{t}:publish", {"messages": [{"data": "eA=="}]})
        assert code == 401 and err["error"]["status"] == "UNAUTHENTICATED"
        req = urllib.request.Request(t, data=b"{}", method="PUT", headers={"authorization": "Bearer secret"})
        assert urllib.request.urlopen(req).status == 200
        code, plan = post(f"{ep}/emulator/faults", {"failNext": [503, 429], "retryAfterSecs": 3})
        assert code == 200 and plan["failNext"] == [503, 429]

        def publish():
            r = urllib.request.Request(f"{t}:publish", data=b'{"messages":[{"data":"eA=="}]}', method="POST",
                                       headers={"authorization": "Bearer secret"})
            try:
                with urllib.request.urlopen(r) as resp:
                    return resp.status, None
            except urllib.error.HTTPError as e:
                return e.code, e.headers.get("retry-after")

        assert publish() == (503, "3")
        assert publish() == (429, "3")
        assert publish() == (200, None)
        with urllib.request.urlopen(f"{ep}/emulator/stats") as r:
            stats = json.loads(r.read())
        assert stats["injectedFailures"] == 2 and stats["publishedMessages"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_official_client_pulls_what_the_sdk_published(endpoint):
    """The demo drives the real SDK against this emulator; the official client reads it back."""
    publisher, subscriber = clients(endpoint)
    topic = publisher.topic_path("sdk-project", "location-updates")
    publisher.create_topic(request={"name": topic})
    sub = subscriber.subscription_path("sdk-project", "official-reader")
    subscriber.create_subscription(request={"name": sub, "topic": topic})
    out = subprocess.run(
        [BIN, "demo", "--devices", "3", "--locations-per-device", "5", "--rollout", "100",
         "--pubsub-endpoint", endpoint, "--pubsub-project", "sdk-project", "--allow-insecure", "--json"],
        capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["accepted"] == 15 and summary["pubsub_delivered"] == 15 and summary["lost"] == 0
    received = pull_all(subscriber, sub, 15)
    assert len(received) == 15
    for m in received:
        doc = json.loads(m.message.data)
        attrs = m.message.attributes
        assert attrs["eventId"] == doc["eventId"] and attrs["deviceId"] == doc["deviceId"]
        assert attrs["deviceId"] in {"demo-device-0", "demo-device-1", "demo-device-2"}
        # The default attributes (docs/CONTRACT.md#pubsub-attributes): the rest is in the payload.
        assert set(attrs) == {"deviceId", "eventId"} | ({"companyId"} if "companyId" in doc else set()), dict(attrs)
        assert m.message.ordering_key == doc["deviceId"]
    assert len({m.message.attributes["eventId"] for m in received}) == 15
    with urllib.request.urlopen(f"{endpoint}/emulator/stats") as r:
        assert json.loads(r.read())["gzipRequests"] >= 1, "some of them came in a gzip body"
    subscriber.acknowledge(request={"subscription": sub, "ack_ids": [m.ack_id for m in received]})
